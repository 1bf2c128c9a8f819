"""``Classifier``: a Runtime joined with its spec's preprocessing and labels -> top-k predictions.

The same object serves the Python API (``Classifier(clsx.open("model.onnx")).predict(paths)``),
``clsx infer`` and the demo, so every path from an image to a label goes through
:mod:`clsx.preprocess` and :func:`top_k` the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from clsx.errors import SpecError
from clsx.preprocess import ImageInput, preprocess
from clsx.runtimes.base import Runtime
from clsx.spec import ModelSpec, PreprocessSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Top-k for one image, best first; or the reason the image could not be classified."""

    source: str  # the path as given, or "<image N>" for in-memory images
    indices: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    probs: tuple[float, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by ``clsx infer --format jsonl`` (stable keys)."""
        return {
            "path": self.source,
            "topk": [{"index": i, "label": lab, "prob": round(p, 6)} for i, lab, p in zip(self.indices, self.labels, self.probs)],
            "error": self.error,
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, probabilities), each (N, k), best first; ties go to the lower class index."""
    probs = softmax(logits)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def source_name(src: ImageInput, position: int) -> str:
    """How an input is named in results: its path, or ``<image N>`` for in-memory images."""
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return f"<image {position}>"


def _is_single_image(images: Any) -> bool:
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return True
    return isinstance(images, np.ndarray) and images.ndim in (2, 3)


class Classifier:
    """Top-k classification with a Runtime and the preprocessing its spec describes.

    ``runtime`` is a :class:`Runtime` or anything :func:`clsx.open` takes (then ``open_kw`` go to
    ``clsx.open`` and the Classifier closes the runtime it opened). Nothing loads until first use.
    """

    def __init__(self, runtime: Runtime | str | Path | Any, *, batch_size: int = 32, workers: int | None = None, **open_kw: Any) -> None:
        if batch_size < 1:
            raise SpecError(f"batch size must be at least 1; got {batch_size}")
        if isinstance(runtime, Runtime):
            if open_kw:
                raise TypeError(f"open options {sorted(open_kw)} apply only when the Classifier opens the runtime itself")
            self.runtime, self._owns_runtime = runtime, False
        else:
            from clsx.runtimes.registry import open as open_runtime

            self.runtime, self._owns_runtime = open_runtime(runtime, **open_kw), True
        self.batch_size = batch_size
        self.workers = workers

    # -- what the model expects ------------------------------------------------------------------

    @property
    def spec(self) -> ModelSpec:
        return self.runtime.spec

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return self.spec.preprocess

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.spec.labels

    def effective_topk(self, topk: int) -> int:
        """``topk`` capped at the number of classes (with a warning when it had to be capped)."""
        if topk < 1:
            raise SpecError(f"topk must be at least 1; got {topk}")
        if topk > self.num_classes:
            log.warning("topk %d is more than the model's %d classes; using %d", topk, self.num_classes, self.num_classes)
            return self.num_classes
        return topk

    # -- the steps -------------------------------------------------------------------------------

    def load(self, image: ImageInput) -> np.ndarray:
        """One image -> CHW float32 tensor (thread-safe; raises ImageError for bad images)."""
        return preprocess(image, self.preprocess_spec)

    def classify(self, batch: np.ndarray, sources: list[str], topk: int) -> list[Prediction]:
        """Run an NCHW batch and turn its logits into one Prediction per row."""
        logits = self.runtime.run(batch)
        indices, probs = top_k(logits, topk)
        names = self.labels
        return [
            Prediction(
                source=src,
                indices=tuple(int(i) for i in idx),
                labels=tuple(names[i] if names and i < len(names) else "" for i in idx),
                probs=tuple(float(p) for p in pr),
            )
            for src, idx, pr in zip(sources, indices, probs)
        ]

    def predict(self, images: ImageInput | Iterable[ImageInput], topk: int = 5) -> list[Prediction]:
        """Top-k for each image (paths, PIL images or uint8 HWC arrays), in input order.

        Images that cannot be read get a Prediction with ``error`` set instead of raising, so one bad
        file does not lose the others. Decoding runs in worker threads, overlapped with inference.
        """
        return list(self.predict_iter(images, topk=topk))

    def predict_iter(self, images: ImageInput | Iterable[ImageInput], topk: int = 5) -> Iterator[Prediction]:
        """Like :meth:`predict`, but streaming: memory stays bounded for any number of images."""
        from clsx.infer import predict_batches

        if _is_single_image(images):
            images = [images]  # type: ignore[list-item]
        for batch in predict_batches(self, images, topk=topk, batch_size=self.batch_size, workers=self.workers):  # type: ignore[arg-type]
            yield from batch

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_runtime:
            self.runtime.deactivate()

    def __enter__(self) -> "Classifier":
        self.runtime.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Classifier {self.runtime!r}>"
