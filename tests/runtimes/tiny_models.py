"""Small models and ONNX files for runtime, classifier and infer tests (seconds, not minutes).

``tiny_model()`` is a 32x32 CIFAR-style net whose logits are spread out (scaled head), so top-k order
is decided by clear margins, not by float noise between backends. ``export(model, path)`` writes an
ONNX file with clsx metadata: through ``clsx.exporter.export_onnx`` when the exporter is present,
else torch's TorchScript exporter plus ``clsx.core.metadata.embed_in_onnx``.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

from clsx.core.spec import ModelSpec, PreprocessSpec

LABELS = tuple(f"class{i}" for i in range(10))


def tiny_model(seed: int = 0):
    import torch
    from torch import nn

    from clsx.zoo import LoadedModel

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )
    with torch.no_grad():
        net[-1].weight.mul_(40.0)  # spread the logits: clear top-k margins
    spec = ModelSpec(
        name="tiny",
        source="custom",
        num_classes=10,
        preprocess=PreprocessSpec(input_size=(3, 32, 32), resize_size=36),
        labels=LABELS,
        weights="random",
    )
    return LoadedModel(module=net.eval(), spec=spec)


def export(loaded, path: Path, *, batch: int | None = None, metadata: bool = True) -> Path:
    """ONNX for ``loaded`` at ``path``: dynamic batch, or a fixed ``batch``; optionally without metadata."""
    if metadata and importlib.util.find_spec("clsx.exporter") is not None:
        try:
            from clsx.exporter import export_onnx
        except ImportError:  # the exporter package exists but is incomplete (work in progress)
            pass
        else:
            return Path(export_onnx(loaded, path, batch=batch or "dynamic", verify=False).path)
    import onnx
    import torch

    from clsx.core.metadata import embed_in_onnx, make_document

    c, h, w = loaded.spec.preprocess.input_size
    x = torch.zeros(batch or 2, c, h, w)
    dyn = None if batch else {"input": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(loaded.module, (x,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes=dyn, dynamo=False)
    if metadata:
        model = onnx.load(str(path))
        n = batch or "batch"
        doc = make_document(loaded.spec, artifact="onnx", precision="fp32",
                            inputs=[{"name": "input", "shape": [n, c, h, w], "dtype": "float32"}],
                            outputs=[{"name": "logits", "shape": [n, loaded.spec.num_classes], "dtype": "float32"}])
        embed_in_onnx(model, doc)
        onnx.save(model, str(path))
    return path


def tiny_onnx_once(tmp_path_factory) -> Path:
    """The dynamic-batch ONNX of ``tiny_model()``, exported once per test session (it is deterministic)."""
    path = tmp_path_factory.getbasetemp() / "clsx-tiny-onnx" / "tiny.onnx"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        export(tiny_model(), path)
    return path
