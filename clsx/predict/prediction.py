"""``Prediction``: the top-k of one image (or why it could not be classified), and how logits become one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from clsx.core.agreement import softmax
from clsx.core.preprocess import ImageInput


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


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, probabilities), each (N, k), best first; ties go to the lower class index."""
    probs = softmax(logits)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def predictions(logits: np.ndarray, sources: Sequence[str], k: int, labels: Sequence[str] | None) -> list[Prediction]:
    """One Prediction per row of ``logits`` (N, classes)."""
    indices, probs = top_k(logits, k)
    return [
        Prediction(
            source=src,
            indices=tuple(int(i) for i in idx),
            labels=tuple(labels[i] if labels and i < len(labels) else "" for i in idx),
            probs=tuple(float(p) for p in pr),
        )
        for src, idx, pr in zip(sources, indices, probs)
    ]


def source_name(src: ImageInput, position: int) -> str:
    """How an input is named in results: its path, or ``<image N>`` for in-memory images."""
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    return f"<image {position}>"
