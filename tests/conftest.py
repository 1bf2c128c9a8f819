"""Shared fixtures: real photos and real ImageNet weights shipped by registry packages.

Markers: ``gpu`` tests skip without a CUDA device, ``tensorrt`` tests skip without the full TensorRT
package; both say why. Everything else runs offline on CPU.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from clsx.zoo import samples


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    cuda = _has_cuda()
    trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; none on this machine"))
        if "tensorrt" in item.keywords and not trt:
            item.add_marker(pytest.mark.skip(reason="needs the full TensorRT package (pip install 'clsx[tensorrt]'), not installable here"))


@pytest.fixture
def native_kernels(monkeypatch):
    """The native image kernels (clsx.core._resample, which the install builds where a C compiler exists), in
    use. Without them the test skips, naming the missing build; CI (CLSX_REQUIRE_CPP=1) fails instead."""
    from clsx.core import preprocess as pp

    monkeypatch.delenv("CLSX_RESAMPLE", raising=False)
    if pp._native is None:
        reason = "needs the native kernels clsx.core._resample, not built here (no C compiler at install time)"
        if os.environ.get("CLSX_REQUIRE_CPP", "").strip() not in ("", "0"):
            pytest.fail(f"native code required (CLSX_REQUIRE_CPP=1) but {reason}")
        pytest.skip(reason)
    return pp._native


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    paths = samples.photo_paths()
    assert len(paths) >= 15, f"expected the scikit-image/scikit-learn photos, found {paths}"
    return paths


@pytest.fixture(scope="session")
def photo(photos) -> dict[str, Path]:
    """Photos by stem: photo['coffee'], photo['chelsea'] ..."""
    return {p.stem: p for p in photos}


@pytest.fixture(scope="session")
def lite0_weights() -> Path:
    return samples.efficientnet_lite0_weights()


@pytest.fixture(scope="session")
def lite0(lite0_weights):
    """timm tf_efficientnet_lite0 with the real ImageNet weights, loaded through the --weights path."""
    from clsx import zoo

    return zoo.build(samples.DEMO_MODEL, weights=lite0_weights)


@pytest.fixture(scope="session")
def lite0_onnx(tmp_path_factory, lite0) -> Path:
    """FP32 ONNX of the real-weights lite0, clsx metadata inside (exported once per test session)."""
    from clsx.exporter import export_onnx

    out = tmp_path_factory.mktemp("lite0-onnx") / "lite0.onnx"
    return export_onnx(lite0, out, verify=False).path


CIFAR_NET = '''
import torch
from torch import nn


def build(num_classes: int = 10) -> nn.Module:
    """A small CIFAR-style net (32x32 input) defined outside clsx."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, num_classes),
    )


def not_a_model():
    return 42
'''


@pytest.fixture
def cifar_module(tmp_path, monkeypatch) -> str:
    """A user package `usernets.cifar` importable from the current directory; returns 'usernets.cifar:build'."""
    pkg = tmp_path / "usernets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cifar.py").write_text(CIFAR_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "usernets.cifar:build"
    for mod in [m for m in sys.modules if m == "usernets" or m.startswith("usernets.")]:
        del sys.modules[mod]
