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
import re
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

    def warn_if_small(self) -> None:
        """Say when the calibration sample is below :data:`USEFUL_CALIBRATION_IMAGES` (before calibrating on it)."""
        if len(self.calibration) < USEFUL_CALIBRATION_IMAGES:
            log.warning("calibrating on %d images (%d source photos): below %d the ranges follow the few photos seen and "
                        "will not generalise to unseen ones", len(self.calibration), len(_by_source(self.calibration)),
                        USEFUL_CALIBRATION_IMAGES)

    def calibration_digest(self) -> str:
        """sha256 over the calibration file list (paths and sizes): part of the calibration cache key."""
        h = hashlib.sha256()
        for p in self.calibration:
            h.update(str(p).encode())
            h.update(str(p.stat().st_size if p.exists() else -1).encode())
        return h.hexdigest()


#: below this many calibration images the job warns: ranges then follow the few photos seen and do not generalise
#: (TensorRT's and ModelOpt's guides use about 500; min-max ranges of a few dozen photos clip unseen ones)
USEFUL_CALIBRATION_IMAGES = 100

#: a trailing view marker: photo_03.jpg, photo-flip.jpg, photo (2).jpg are views of ``photo``
_VIEW_SUFFIX = re.compile(r"(?:[_\- ](?:\d{1,3}|flip(?:ped)?|mirror(?:ed)?|aug\d*|crop\d*|view\d*)| \(\d+\))$", re.IGNORECASE)


def source_of(path: Path) -> tuple[str, str]:
    """The source photo an image is a view of: its folder and its name without trailing view markers
    (``_01``, ``-flip``, `` (2)``, ...). Views of one source always land on the same side of a split."""
    stem = path.stem
    while True:
        shorter = _VIEW_SUFFIX.sub("", stem)
        if shorter == stem or not shorter:
            break
        stem = shorter
    return str(path.parent), stem.lower()


def _by_source(paths: Sequence[Path]) -> dict[tuple[str, str], list[Path]]:
    groups: dict[tuple[str, str], list[Path]] = {}
    for p in paths:
        groups.setdefault(source_of(p), []).append(p)
    return groups


def split_images(folder: Path, num: int, *, seed: int = 0, eval_dir: Path | None = None, eval_num: int = 64) -> ImageSplit:
    """Choose calibration and held-out evaluation images (disjoint by source photo), reproducibly for a seed."""
    if not folder.is_dir():
        raise CalibrationDataError(f"calibration folder {folder}: not a directory")
    files = list_images(folder)
    if not files:
        raise CalibrationDataError(f"calibration folder {folder}: no image files found")
    rng = random.Random(seed)
    if eval_dir is not None:
        evaluation, pool, why = _with_eval_folder(files, eval_dir, eval_num, rng)
    else:
        evaluation, pool, why = _held_out(files, eval_num, rng)
    if not pool:
        raise CalibrationDataError(f"calibration folder {folder}: no images left for calibration after the evaluation split")
    calibration = pool[:num]
    if len(calibration) < num:
        log.warning("asked for %d calibration images; %s: using %d", num, why, len(calibration))
    return ImageSplit(tuple(sorted(calibration)), tuple(sorted(evaluation)))


def _held_out(files: list[Path], eval_num: int, rng: random.Random) -> tuple[list[Path], list[Path], str]:
    """Hold out whole source photos (all their views) until about a fifth of the images, at most ``eval_num``."""
    groups = list(_by_source(files).values())
    largest = max(groups, key=len)
    if len(files) >= 20 and len(largest) > len(files) // 4:
        log.warning("%d of %d images count as views of one source photo %r (names differing only by a trailing counter); "
                    "if they are distinct photos, rename them or pass --eval-dir", len(largest), len(files),
                    source_of(largest[0])[1])
    rng.shuffle(groups)
    target = max(1, min(eval_num, len(files) // 5))
    evaluation: list[Path] = []
    while groups[1:] and len(evaluation) < target:
        evaluation += groups.pop(0)
    if not evaluation:
        log.warning("all %d images are views of one source photo: no held-out evaluation is possible", len(files))
    pool = [p for g in groups for p in g]
    rng.shuffle(pool)
    why = (f"the folder has {len(files)} images, {len(evaluation)} of them (every view of "
           f"{len(_by_source(evaluation))} source photos) held out for evaluation")
    return evaluation[:eval_num] if len(evaluation) > eval_num else evaluation, pool, why


def _with_eval_folder(files: list[Path], eval_dir: Path, eval_num: int,
                      rng: random.Random) -> tuple[list[Path], list[Path], str]:
    evaluation = list_images(eval_dir) if eval_dir.is_dir() else []
    if not evaluation:
        raise CalibrationDataError(f"evaluation folder {eval_dir}: no image files found")
    rng.shuffle(evaluation)
    evaluation = evaluation[:eval_num]
    eval_set = {p.resolve() for p in evaluation}
    eval_sources = {source_of(p)[1] for p in evaluation}
    order = files[:]
    rng.shuffle(order)
    pool = [p for p in order if p.resolve() not in eval_set]
    if len(pool) < len(order):
        log.warning("%d images are in both folders; they are used for evaluation only", len(order) - len(pool))
    shared = sorted({source_of(p)[1] for p in pool} & eval_sources)
    if shared:  # names only: the user chose both folders, so warn rather than drop
        log.warning("calibration and evaluation images look like views of the same %d source photo(s) (e.g. %s): "
                    "the agreement measured on them will be optimistic", len(shared), shared[0])
    why = f"the folder has {len(files)} images, {len(order) - len(pool)} of them also in the evaluation folder"
    return evaluation, pool, why


@dataclass
class BatchStream:
    """Preprocessed batches of ``paths`` in ``fmt`` (NCHW float32 unless the graph takes another), decoded
    lazily; bad files are skipped and counted. ``fill``: the last, short batch is filled up to
    ``batch_size`` by repeating its own images (a graph with a fixed batch takes nothing else; repeats
    leave calibration ranges unchanged)."""

    paths: Sequence[Path]
    spec: PreprocessSpec
    batch_size: int = 16
    fmt: InputFormat = FLOAT_NCHW
    bad: list[tuple[Path, str]] = field(default_factory=list)
    good: list[Path] = field(default_factory=list)
    fill: bool = False

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
            while self.fill and len(pending) < self.batch_size:
                pending.extend(pending[: self.batch_size - len(pending)])
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
