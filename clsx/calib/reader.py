"""Calibration and evaluation images: a seeded, reproducible selection from a folder, streamed in batches.

The folder is walked recursively in sorted order (:func:`clsx.predict.listing.list_images`), then shuffled with
``random.Random(seed)``: the first images form the held-out evaluation split (unless an evaluation
folder is given), the next ``num`` the calibration sample. Batches are decoded on demand through the
one preprocessing implementation, so memory does not grow with the number of images; files that
fail to decode are skipped and counted.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from clsx.core.errors import ClsxError
from clsx.core.machine import cpu_cores
from clsx.core.preprocess import preprocess
from clsx.core.spec import FLOAT_NCHW, InputFormat, PreprocessSpec
from clsx.predict.listing import list_images
from clsx.predict.pipeline import decode, default_window, read_ahead

log = logging.getLogger(__name__)


class CalibrationDataError(ClsxError):
    """No usable calibration or evaluation images."""


@dataclass(frozen=True)
class ImageSplit:
    calibration: tuple[Path, ...]
    evaluation: tuple[Path, ...]

    def calibration_digest(self) -> str:
        """sha256 over the calibration file list (paths and sizes): part of the calibration cache key."""
        h = hashlib.sha256()
        for p in self.calibration:
            h.update(str(p).encode())
            h.update(str(p.stat().st_size if p.exists() else -1).encode())
        return h.hexdigest()


def split_images(folder: Path, num: int, *, seed: int = 0, eval_dir: Path | None = None, eval_num: int = 64) -> ImageSplit:
    """Choose calibration and held-out evaluation images (disjoint), reproducibly for a seed."""
    if not folder.is_dir():
        raise CalibrationDataError(f"calibration folder {folder}: not a directory")
    files = list_images(folder)
    if not files:
        raise CalibrationDataError(f"calibration folder {folder}: no image files found")
    rng = random.Random(seed)
    order = files[:]
    rng.shuffle(order)
    if eval_dir is not None:
        evaluation = list_images(eval_dir) if eval_dir.is_dir() else []
        if not evaluation:
            raise CalibrationDataError(f"evaluation folder {eval_dir}: no image files found")
        eval_set = {p.resolve() for p in evaluation}
        pool = [p for p in order if p.resolve() not in eval_set]
        if len(pool) < len(order):
            log.warning("%d images are in both folders; they are used for evaluation only", len(order) - len(pool))
        rng.shuffle(evaluation)
        evaluation = evaluation[:eval_num]
    else:
        held = max(1, min(eval_num, len(order) // 5)) if len(order) > 1 else 0
        evaluation, pool = order[:held], order[held:]
        if held == 0:
            log.warning("only one image: no held-out evaluation is possible")
    if not pool:
        raise CalibrationDataError(f"calibration folder {folder}: no images left for calibration after the evaluation split")
    calibration = pool[:num]
    if len(calibration) < num:
        log.warning("asked for %d calibration images, the folder has %d after the held-out split: using %d",
                    num, len(pool), len(calibration))
    return ImageSplit(tuple(sorted(calibration)), tuple(sorted(evaluation)))


@dataclass
class BatchStream:
    """Preprocessed batches of ``paths`` in the graph's input format (NCHW float32, or uint8 pixels for a
    graph that normalizes inside), decoded lazily; bad files are skipped and counted."""

    paths: Sequence[Path]
    spec: PreprocessSpec
    batch_size: int = 16
    fmt: InputFormat = FLOAT_NCHW
    bad: list[tuple[Path, str]] = field(default_factory=list)
    good: list[Path] = field(default_factory=list)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Batches in path order; decoding runs ahead on one thread per core while the caller computes."""
        self.bad.clear()
        self.good.clear()
        workers = cpu_cores()
        loaded = read_ahead(self.paths, lambda path: decode(lambda src: preprocess(src, self.spec, self.fmt), path, str(path)),
                            workers=workers, window=default_window(self.batch_size, workers), name="clsx-calib-decode")
        pending: list[np.ndarray] = []
        for path, (tensor, error) in loaded:
            if tensor is None:
                self.bad.append((path, error or "cannot read image"))
                log.warning("skipping %s", error)
                continue
            pending.append(tensor)
            self.good.append(path)
            if len(pending) == self.batch_size:
                yield np.stack(pending)
                pending = []
        if pending:
            yield np.stack(pending)

    def __len__(self) -> int:
        return len(self.paths)


class OrtCalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol over a BatchStream: ``get_next()`` returns
    ``{input_name: batch}`` and ``None`` at the end of a chunk or of the data.

    ``chunk(n)`` lets the caller feed the calibrator ``n`` batches at a time so its collected
    activations stay bounded. A chunk also ends before a batch of a different size (the last, short
    one): ONNX Runtime's histogram collector stacks the batches of one chunk into one array.
    """

    def __init__(self, stream: BatchStream, input_name: str, *, on_batch=None) -> None:
        self._it = iter(stream)
        self._input = input_name
        self._budget: int | None = None
        self._size: int | None = None
        self._on_batch = on_batch
        self._next = next(self._it, None)
        self.exhausted = self._next is None

    def chunk(self, batches: int) -> "OrtCalibrationReader":
        self._budget, self._size = batches, None
        return self

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = self._next
        if batch is None:
            self.exhausted = True
            return None
        if self._budget is not None:
            if self._budget <= 0 or (self._size is not None and len(batch) != self._size):
                return None
            self._budget -= 1
            self._size = len(batch)
        self._next = next(self._it, None)
        self.exhausted = self._next is None
        if self._on_batch:
            self._on_batch(len(batch))
        return {self._input: batch}
