"""ONNX Runtime backend: same logits as torch, lazy session, providers that really loaded, batch limits."""

import logging

import numpy as np
import pytest
from tiny_models import export

import clsx
from clsx.core.metadata import MetadataError
from clsx.runtimes.base import DeviceError, RuntimeInputError, TensorInfo


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def _torch_logits(tiny, x):
    import torch

    with torch.no_grad():
        return tiny.module(torch.from_numpy(x)).numpy()


def test_logits_match_torch_and_lifecycle(tiny, tiny_onnx):
    rt = clsx.open(tiny_onnx)
    # before activation: inputs/outputs/spec come from the metadata, no session exists
    assert rt.inputs == [TensorInfo("input", ("batch", 3, 32, 32), "float32")]
    assert rt.outputs[0].shape == ("batch", 10)
    assert rt.spec == tiny.spec
    assert not rt.is_active and rt._session is None
    x = _x(5)
    out = rt.run(x)
    assert rt.is_active and out.dtype == np.float32 and out.shape == (5, 10)
    np.testing.assert_allclose(out, _torch_logits(tiny, x), rtol=1e-4, atol=1e-4)
    assert rt.run(x[:0]).shape == (0, 10)
    assert rt.inputs[0].name == "input"  # now from the session
    rt.deactivate()
    assert not rt.is_active and rt._session is None
    with clsx.open(tiny_onnx) as rt2:
        assert rt2.is_active
        np.testing.assert_array_equal(rt2.run(x), out)
    assert not rt2.is_active


def test_describe_reports_loaded_providers_and_threads(tiny_onnx):
    rt = clsx.open(tiny_onnx, device="cpu", threads=1)
    text = rt.describe()
    assert "providers CPUExecutionProvider" in text and "1 intra-op threads" in text
    assert rt.providers == ["CPUExecutionProvider"]


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_the_pipeline_turns_spinning_off_unless_told(tiny_onnx):
    """Decode threads share the cores with a Classifier's session: ORT's intra-op threads do not spin
    (measured in benchmarks/results/pipeline_bench.md); an explicit spin= and an active session stay."""
    from clsx.predict.classifier import Classifier

    rt = clsx.open(tiny_onnx, device="cpu")
    assert rt.spin is None
    Classifier(rt)
    assert rt.spin is False and "(not spinning)" in rt.describe()
    so = rt.session_options(__import__("onnxruntime"))
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    told = clsx.open(tiny_onnx, device="cpu", spin=True)
    Classifier(told)
    assert told.spin is True
    active = clsx.open(tiny_onnx, device="cpu").activate()
    Classifier(active)
    assert active.spin is None


def test_silent_provider_fallback_is_reported(tiny_onnx, caplog):
    """onnxruntime-gpu falls back to CPU without an error; clsx must say so."""
    rt = clsx.open(tiny_onnx, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="clsx"):
        rt.activate()
    if "CUDAExecutionProvider" in rt.providers:
        pytest.skip("CUDA provider really loaded here; nothing fell back")
    assert any("could not load CUDAExecutionProvider" in r.getMessage() for r in caplog.records)
    assert "requested CUDAExecutionProvider: did not load" in rt.describe()


def test_cuda_device_without_gpu_build_names_the_fix(tiny_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA")
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        clsx.open(tiny_onnx, device="cuda").activate()
    rt = clsx.open(tiny_onnx, device="auto")
    assert rt.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("fixed", [1, 2])
def test_fixed_batch_graph_is_split_and_padded(tiny, tmp_path, fixed):
    path = export(tiny, tmp_path / f"b{fixed}.onnx", batch=fixed)
    rt = clsx.open(path)
    x = _x(3, seed=fixed)
    rt.activate()
    assert rt.batch_bounds() == (fixed, fixed)
    np.testing.assert_allclose(rt.run(x), _torch_logits(tiny, x), rtol=1e-4, atol=1e-4)


def test_bad_batches_are_user_errors(tiny_onnx):
    rt = clsx.open(tiny_onnx)
    with pytest.raises(RuntimeInputError, match="numpy array"):
        rt.run([[0.0]])
    with pytest.raises(RuntimeInputError, match="4 dimensions"):
        rt.run(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(RuntimeInputError, match="float32 tensors"):
        rt.run(np.zeros((1, 3, 32, 32), np.uint8))
    with pytest.raises(RuntimeInputError, match=r"N x 3x32x32 inputs; got a batch of shape \(1, 3, 224, 224\)"):
        rt.run(np.zeros((1, 3, 224, 224), np.float32))
    x64 = _x(2).astype(np.float64)  # other float types are converted
    np.testing.assert_allclose(rt.run(x64), rt.run(x64.astype(np.float32)))


def test_onnx_without_clsx_metadata_needs_its_preprocessing(tiny, tmp_path):
    path = export(tiny, tmp_path / "bare.onnx", metadata=False)
    rt = clsx.open(path)
    with pytest.raises(MetadataError, match="preprocessing is unknown; pass --preset MODEL"):
        rt.spec
    assert rt.inputs[0].shape[1:] == (3, 32, 32)  # read from the session instead
    given = clsx.open(path, spec=tiny.spec)
    assert clsx.Classifier(given).labels == tiny.spec.labels


def test_unloadable_onnx_is_one_line(tmp_path, tiny_onnx):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage")
    from clsx.core.errors import ClsxError

    with pytest.raises(ClsxError, match="junk.onnx"):
        clsx.open(junk, spec=clsx.open(tiny_onnx).spec).activate()
