"""torch backend: model names, in-memory models, overrides, devices."""

import numpy as np
import pytest

from tiny_models import tiny_model

import clsx
from clsx.core.errors import SpecError
from clsx.runtimes.base import DeviceError
from clsx.core.spec import PreprocessOverrides


def _x(n, size=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def test_in_memory_model_runs_its_module(tiny):
    import torch

    rt = clsx.open(tiny)
    assert rt.backend == "torch" and rt.spec == tiny.spec
    x = _x(4)
    with torch.no_grad():
        want = tiny.module(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(rt.run(x), want)
    assert "eager" in rt.describe() and "cpu" in rt.describe()
    assert rt.inputs[0].shape == ("batch", 3, 32, 32) and rt.outputs[0].shape == ("batch", 10)


def test_bare_module_needs_a_spec(tiny):
    with pytest.raises(SpecError, match="needs spec="):
        clsx.open(tiny.module).run(_x(1))
    rt = clsx.open(tiny.module, spec=tiny.spec, preprocess=PreprocessOverrides(interpolation="bicubic"))
    assert rt.spec.preprocess.interpolation == "bicubic" and rt.spec.num_classes == 10
    with pytest.raises(Exception, match="torch backend"):
        clsx.open(tiny, backend="onnxrt")


def test_model_name_builds_on_first_use_with_overrides(cifar_module):
    rt = clsx.open(f"{cifar_module}@torch", num_classes=7, preprocess=PreprocessOverrides(input_size=(3, 32, 32)))
    assert not rt.is_active
    assert rt.spec.num_classes == 7 and rt.spec.preprocess.input_size == (3, 32, 32)
    assert rt.run(_x(2)).shape == (2, 7)
    rt.deactivate()
    assert rt._loaded is None and rt._module is None  # a built model is freed
    assert rt.run(_x(1)).shape == (1, 7)  # and rebuilt on the next use


def test_cuda_without_gpu_is_a_clear_error(tiny):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        clsx.open(tiny, device="cuda").activate()
    with pytest.raises(DeviceError, match="ONNX Runtime execution provider"):
        clsx.open(tiny, device="tensorrt")


@pytest.mark.gpu
def test_cuda_matches_cpu():
    x = _x(6)
    cpu = clsx.open(tiny_model(), device="cpu").run(x)
    gpu = clsx.open(tiny_model(), device="cuda").run(x)  # a fresh copy: .to("cuda") moves the module
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-3)
