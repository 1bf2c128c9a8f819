"""Exports shared by the exporter tests (session-scoped: each model is exported once per run)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lite0_exported(tmp_path_factory, lite0):
    """tf_efficientnet_lite0 with real ImageNet weights, exported FP32 + FP16 and verified on all photos."""
    from clsx.exporter import export_onnx

    out = tmp_path_factory.mktemp("lite0") / "lite0.onnx"
    return export_onnx(lite0, out, fp16=True)


@pytest.fixture(scope="session")
def resnet18_small():
    """A random-weight resnet18 at 64 px with 10 classes: fast to export."""
    from clsx import zoo
    from clsx.core.spec import PreprocessOverrides

    return zoo.build("resnet18", num_classes=10, preprocess=PreprocessOverrides(input_size=(3, 64, 64)))


@pytest.fixture(scope="session")
def resnet18_exported(tmp_path_factory, resnet18_small):
    from clsx.exporter import export_onnx

    return export_onnx(resnet18_small, tmp_path_factory.mktemp("r18") / "r18.onnx", verify_photos=3)


@pytest.fixture(scope="session")
def tiny():
    """A small Conv-BN-ReLU classifier (random weights, 24 px, 5 classes): the cheapest real export."""
    import torch
    from torch import nn

    from clsx.core.spec import ModelSpec, PreprocessSpec
    from clsx.zoo import LoadedModel

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()
    spec = ModelSpec(name="tiny", source="custom", num_classes=5,
                     preprocess=PreprocessSpec(input_size=(3, 24, 24), resize_size=27))
    return LoadedModel(module=net, spec=spec)
