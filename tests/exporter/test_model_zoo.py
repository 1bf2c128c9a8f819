"""A fast representative subset of the export sweep (benchmarks/export_sweep.py runs them all).

One model per classic architecture family the issue names (AlexNet, VGG, GoogLeNet, Inception v3,
ResNet, ResNeXt, Wide-ResNet, DenseNet, MobileNet, EfficientNet, SE-ResNet, a ViT), random weights,
small inputs and 10 classes, verified against torch on 3 photos + random input. To keep CI fast they are exported with a fixed batch of 2,
which halves the dynamo exporter's tracing time; the dynamic batch axis is covered by the other
tests here (resnet18, mobilenet_v3_small, lite0, the user's CIFAR net) and, for every model, by the
sweep.
"""

from __future__ import annotations

import onnx
import pytest

from clsx import zoo
from clsx.exporter import export_onnx
from clsx.core.spec import PreprocessOverrides

SUBSET = [
    ("tv:alexnet", 64),
    ("tv:vgg11", 32),
    ("tv:googlenet", 64),
    ("tv:inception_v3", 80),  # its stem needs at least 75 px
    ("tv:resnet18", 32),
    ("tv:resnext50_32x4d", 64),  # the smallest ResNeXt
    ("tv:wide_resnet50_2", 32),  # the smallest Wide-ResNet (69 M parameters: the weights, not the graph, cost here)
    ("tv:densenet121", 32),
    ("tv:mobilenet_v3_small", (48, 40)),  # non-square: --input-size reaches the graph
    ("tv:efficientnet_b0", 64),
    ("timm:legacy_seresnet18", 64),
    ("timm:test_vit", None),  # timm's tiny ViT at its native size
]


@pytest.mark.parametrize("name,size", SUBSET, ids=[n for n, _ in SUBSET])
def test_family_exports_and_verifies(tmp_path, name, size):
    h, w = size if isinstance(size, tuple) else (size, size)
    overrides = PreprocessOverrides(input_size=(3, h, w)) if size else None
    loaded = zoo.build(name, num_classes=10, preprocess=overrides)
    res = export_onnx(loaded, tmp_path / "m.onnx", batch=2, verify_photos=3)
    v = res.verification
    assert res.exporter == "dynamo", res.metadata["producer"]
    assert v["passed"] and v["photos"] == 3 and v["random"] == 2, v
    assert v["max_abs_diff"] <= 1e-3 * max(v["photos_logit_scale"], v["random_logit_scale"])
    graph = onnx.load(str(res.path), load_external_data=False).graph
    if size:
        assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [2, 3, h, w]
        assert res.metadata["model"]["preprocess"]["input_size"] == [3, h, w]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [2, 10]
