"""clsx.open: backend choice from the target, name@backend, pairing errors, nothing heavy up front."""

import json

import numpy as np
import pytest

import clsx
from clsx.core.errors import ClsxError
from clsx.runtimes import BackendError, infer_backend, parse_device, register_backend, split_backend
from clsx.runtimes.base import DeviceError, Runtime


def test_split_backend_only_takes_known_names():
    assert split_backend("resnet50@torch") == ("resnet50", "torch")
    assert split_backend("out/model.onnx@onnxrt") == ("out/model.onnx", "onnxrt")
    assert split_backend("me@host/model.onnx") == ("me@host/model.onnx", None)
    assert split_backend("timm:vit@tensorrt") == ("timm:vit", "tensorrt")
    assert split_backend("@torch") == ("@torch", None)


def test_infer_backend_from_file_type(tmp_path):
    assert infer_backend("m.onnx") == "onnxrt"
    assert infer_backend("M.ONNX") == "onnxrt"
    assert infer_backend("m.plan") == "tensorrt"
    assert infer_backend("m.engine") == "tensorrt"
    assert infer_backend("ck.pth") == "torch"
    assert infer_backend("resnet50") == "torch"
    assert infer_backend("pkg.mod:build") == "torch"
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"x")
    with pytest.raises(BackendError, match="cannot tell which backend"):
        infer_backend(odd)
    with pytest.raises(BackendError, match="is a folder"):
        infer_backend(tmp_path)


def test_open_is_cheap_and_picks_the_backend(tiny_onnx):
    rt = clsx.open(tiny_onnx)
    assert rt.backend == "onnxrt" and not rt.is_active
    rt2 = clsx.open(f"{tiny_onnx}@onnxrt")
    assert rt2.backend == "onnxrt" and rt2.target == tiny_onnx
    named = clsx.open("resnet50")  # building resnet50 would take seconds: open must not
    assert named.backend == "torch" and not named.is_active and named._loaded is None
    assert isinstance(named, Runtime)


def test_pairing_errors(tiny_onnx, tmp_path):
    with pytest.raises(BackendError, match="clsx build"):
        clsx.open(tiny_onnx, backend="tensorrt")
    with pytest.raises(BackendError, match="the onnxrt backend runs .onnx files"):
        clsx.open("resnet50", backend="onnxrt")
    with pytest.raises(BackendError, match="torch backend runs model names"):
        clsx.open(f"{tiny_onnx}@torch")
    with pytest.raises(BackendError, match="names backend 'torch' but backend='onnxrt'"):
        clsx.open("resnet50@torch", backend="onnxrt")
    with pytest.raises(BackendError, match="unknown backend 'tflite'"):
        clsx.open(tiny_onnx, backend="tflite")
    with pytest.raises(BackendError, match="weights= apply to model names"):
        clsx.open(tiny_onnx, weights="ck.pth")
    with pytest.raises(BackendError, match="no such file"):
        clsx.open(tmp_path / "missing.onnx")
    with pytest.raises(BackendError, match="no such file"):
        clsx.open(tmp_path / "missing.plan")


def test_register_duplicate_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_backend("onnxrt", "somewhere:Else")


def test_parse_device():
    assert str(parse_device(None)) == "auto"
    assert str(parse_device("cuda")) == "cuda:0"
    assert str(parse_device("GPU:1")) == "cuda:1"
    assert str(parse_device("trt")) == "tensorrt:0"
    for bad in ("tpu", "cuda:x", "cpu:1"):
        with pytest.raises(DeviceError, match="unknown device"):
            parse_device(bad)


def test_checkpoint_target_takes_the_architecture_from_its_sidecar(tmp_path, cifar_module):
    import torch

    from clsx import zoo

    ref = zoo.build(cifar_module, num_classes=10)
    ckpt = tmp_path / "ck.pth"
    torch.save(ref.module.state_dict(), ckpt)
    with pytest.raises(BackendError, match="checkpoint without an architecture"):
        clsx.open(ckpt)
    ckpt.with_name("ck.pth.json").write_text(json.dumps({"model": cifar_module, "num_classes": 10,
                                                         "preprocess": {"input_size": [3, 32, 32]}}))
    with pytest.raises(ClsxError, match=r"ck\.pth\.json: its model 'usernets\.cifar:build' names code"):
        clsx.open(ckpt).spec  # a sidecar names zoo models only: a module:function comes from the user
    rt = clsx.open(ckpt, model=cifar_module)  # named by the caller: its code may run; the sidecar's settings still apply
    assert rt.backend == "torch"
    assert rt.spec.preprocess.input_size == (3, 32, 32) and rt.spec.weights.startswith("file:ck.pth")
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = ref.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt.run(x), want, atol=1e-5)
    with pytest.raises(BackendError, match="itself a checkpoint"):
        clsx.open(ckpt, weights=ckpt)
