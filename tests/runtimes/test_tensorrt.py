"""TensorRT engine runtime. What runs without a GPU: sidecar reading, device checks, the compatibility
check before deserializing (on a real tensorrt_rtx engine). Execution tests are marked gpu."""

import json

import numpy as np
import pytest

import clsx
from clsx.core.metadata import MetadataError
from clsx.runtimes.base import DeviceError


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory, tiny_onnx):
    """A real engine (profile batch 1..4) built by whichever TensorRT is installed; the builder of
    tensorrt_rtx runs without a GPU."""
    pytest.importorskip("clsx.exporter.engine")
    from clsx.runtimes import trt_lib
    from clsx.exporter.engine import build_engine

    if not trt_lib.available_flavours():
        pytest.skip("no TensorRT flavour installed")
    out = tmp_path_factory.mktemp("plan") / "tiny.plan"
    return build_engine(tiny_onnx, out, target="auto", min_batch=1, opt_batch=2, max_batch=4).path


def test_sidecar_describes_the_engine_before_loading(tiny_plan, tiny):
    rt = clsx.open(tiny_plan)
    assert rt.backend == "tensorrt" and not rt.is_active
    assert rt.spec == tiny.spec
    assert rt.inputs[0].shape == ("batch", 3, 32, 32) and rt.outputs[0].shape == ("batch", 10)
    assert rt.flavour in ("tensorrt", "tensorrt_rtx")


def test_compatibility_is_checked_before_deserializing(tiny_plan, monkeypatch):
    from clsx.runtimes import trt_lib

    seen = []

    def refuse(doc, **kw):
        seen.append(doc["tensorrt"]["flavour"])
        raise trt_lib.EngineIncompatibleError("built for another GPU")

    def must_not_import(flavour):
        raise AssertionError("TensorRT was imported before the compatibility check passed")

    monkeypatch.setattr(trt_lib, "check_engine_compatible", refuse)
    monkeypatch.setattr(trt_lib, "import_tensorrt", must_not_import)
    with pytest.raises(trt_lib.EngineIncompatibleError, match="another GPU"):
        clsx.open(tiny_plan).run(np.zeros((1, 3, 32, 32), np.float32))
    assert seen == [clsx.open(tiny_plan).flavour]


def test_no_gpu_is_one_clear_line(tiny_plan):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from clsx.core.errors import ClsxError

    with pytest.raises(ClsxError, match="NVIDIA GPU"):
        clsx.open(tiny_plan).activate()


def test_device_and_sidecar_errors(tmp_path, tiny_plan):
    with pytest.raises(DeviceError, match="NVIDIA GPU"):
        clsx.open(tiny_plan, device="cpu")
    bare = tmp_path / "bare.plan"
    bare.write_bytes(tiny_plan.read_bytes())
    with pytest.raises(MetadataError, match="no clsx metadata"):
        clsx.open(bare).activate()
    (tmp_path / "bare.plan.json").write_text(json.dumps({**json.loads(tiny_plan.with_name("tiny.plan.json").read_text()), "tensorrt": {}}))
    with pytest.raises(Exception, match="flavour"):
        clsx.open(bare).flavour


@pytest.mark.gpu
def test_engine_matches_onnxruntime_and_splits_big_batches(tiny_plan, tiny_onnx):
    from clsx.runtimes.trt_lib import EngineIncompatibleError

    rt = clsx.open(tiny_plan)
    try:
        rt.activate()
    except EngineIncompatibleError as exc:  # e.g. a tensorrt_rtx plan on a Hopper GPU
        pytest.skip(f"engine cannot run on this GPU: {exc}")
    assert rt.batch_bounds() == (1, 4)
    x = np.random.default_rng(0).standard_normal((10, 3, 32, 32)).astype(np.float32)  # > profile max 4
    want = clsx.open(tiny_onnx, device="cpu").run(x)
    got = rt.run(x)
    assert got.shape == (10, 10)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
    assert (got.argmax(1) == want.argmax(1)).all()
    assert "profile batch 1..4" in rt.describe()
    rt.deactivate()
    assert rt._engine is None
