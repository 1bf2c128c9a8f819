"""``Classifier``: a Runtime joined with its spec's preprocessing and labels -> top-k predictions.

The same object serves the Python API (``Classifier(clsx.open("model.onnx")).predict(paths)``),
``clsx infer`` and the demo, so every path from an image to a label goes through
:mod:`clsx.core.preprocess` and :func:`top_k` the same way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
from PIL import Image

from clsx.core.errors import SpecError
from clsx.core.machine import cpu_cores
from clsx.core.preprocess import ImageInput, preprocess
from clsx.core.spec import ModelSpec, PreprocessSpec, is_int, show_value
from clsx.predict.pipeline import batched, decode, default_window, read_ahead
from clsx.predict.prediction import Prediction, predictions, source_name
from clsx.runtimes.base import Runtime

log = logging.getLogger(__name__)


_IMAGE_TYPES = (str, os.PathLike, Image.Image, np.ndarray)
_TAKES = "a path, a PIL image or a uint8 HxW / HxWxC array, or an iterable of them"


class TensorPool:
    """Image tensors of one shape, recycled: the decode workers write into a free one, and it comes back
    once its batch is stacked. Fresh arrays for every image cost page faults (~15 % of preprocessing on
    800x500 photos); the pool holds no more than were in flight at once. Thread-safe (list pop/append)."""

    def __init__(self, shape: tuple[int, ...], dtype: str) -> None:
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._free: list[np.ndarray] = []

    def take(self) -> np.ndarray:
        try:
            return self._free.pop()
        except IndexError:
            return np.empty(self.shape, self.dtype)

    def give(self, tensors: Iterable[np.ndarray]) -> None:
        self._free.extend(tensors)


class ImageArgumentError(SpecError, TypeError):
    """``images`` (or one of them) is not something Classifier reads: a programming error, raised at
    once (a file that cannot be read is a Prediction with ``error`` set instead)."""


def _is_single_image(images: Any) -> bool:
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return True
    return isinstance(images, np.ndarray) and images.ndim in (2, 3)


def _sources(images: Any) -> Iterator[ImageInput]:
    """``images`` as an iterator of single images: the argument is checked now, each item when it is
    reached (a stream of any length stays a stream)."""
    if _is_single_image(images):
        return iter([images])
    if isinstance(images, (bytes, bytearray, memoryview)):
        raise ImageArgumentError(f"images is {type(images).__name__}, which clsx does not decode: pass {_TAKES} "
                                 "(for encoded bytes: PIL.Image.open(io.BytesIO(data)))")
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise ImageArgumentError(f"an image array must be HxW or HxWxC (NxHxWxC for several); got shape {images.shape}")
    if images is None or isinstance(images, Mapping) or not isinstance(images, Iterable):
        raise ImageArgumentError(f"images must be {_TAKES}; got {_kind(images)}")
    return _checked(images)


def _checked(images: Iterable[Any]) -> Iterator[ImageInput]:
    for i, image in enumerate(images):
        if not isinstance(image, _IMAGE_TYPES) or isinstance(image, np.ndarray) and image.ndim not in (2, 3):
            shown = f"an array of shape {image.shape}" if isinstance(image, np.ndarray) else _kind(image)
            raise ImageArgumentError(f"images[{i}] is {shown}, not an image: pass {_TAKES}")
        yield image


def _kind(value: Any) -> str:
    return "None" if value is None else f"{type(value).__name__} {show_value(value).rsplit(' (', 1)[0]}"


def _positive_int(value: Any, what: str) -> int:
    if not is_int(value):
        raise SpecError(f"{what} must be an integer; got {show_value(value)}")
    if value < 1:
        raise SpecError(f"{what} must be at least 1; got {value}")
    return int(value)


class Classifier:
    """Top-k classification with a Runtime and the preprocessing its spec describes.

    ``runtime`` is a :class:`Runtime` or anything :func:`clsx.open` takes (then ``open_kw`` go to
    ``clsx.open`` and the Classifier closes the runtime it opened). Nothing loads until first use.
    """

    def __init__(self, runtime: Runtime | str | Path | Any, *, batch_size: int = 32, workers: int | None = None, **open_kw: Any) -> None:
        batch_size = _positive_int(batch_size, "batch size")
        workers = _positive_int(workers, "workers") if workers is not None else None
        if isinstance(runtime, Runtime):
            if open_kw:
                raise TypeError(f"open options {sorted(open_kw)} apply only when the Classifier opens the runtime itself")
            self.runtime, self._owns_runtime = runtime, False
        else:
            from clsx.runtimes.registry import open as open_runtime

            self.runtime, self._owns_runtime = open_runtime(runtime, **open_kw), True
        self.batch_size = batch_size
        self.workers = workers
        self.runtime.share_cores()  # predict decodes on threads beside the model (ORT: no spinning)

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
        topk = _positive_int(topk, "topk")
        if topk > self.num_classes:
            log.warning("topk %d is more than the model's %d classes; using %d", topk, self.num_classes, self.num_classes)
            return self.num_classes
        return topk

    # -- the steps -------------------------------------------------------------------------------

    def load(self, image: ImageInput, out: np.ndarray | None = None) -> np.ndarray:
        """One image -> one tensor in the runtime's input format (CHW float32 unless the graph takes
        another; thread-safe; raises ImageError for bad images), written into ``out`` when given."""
        return preprocess(image, self.preprocess_spec, self.runtime.input_format, out=out)

    def classify(self, batch: np.ndarray, sources: list[str], topk: int) -> list[Prediction]:
        """Run an NCHW batch and turn its logits into one Prediction per row."""
        return predictions(self.runtime.run(batch), sources, topk, self.labels)

    def predict(self, images: ImageInput | Iterable[ImageInput], topk: int = 5) -> list[Prediction]:
        """Top-k for each image (paths, PIL images or uint8 HWC arrays), in input order.

        Images that cannot be read get a Prediction with ``error`` set instead of raising, so one bad
        file does not lose the others. Decoding runs in worker threads, overlapped with inference.
        """
        return list(self.predict_iter(images, topk=topk))

    def predict_iter(self, images: ImageInput | Iterable[ImageInput], topk: int = 5) -> Iterator[Prediction]:
        """Like :meth:`predict`, but streaming: memory stays bounded for any number of images."""
        for batch in self.predict_batches(images, topk=topk):  # type: ignore[arg-type]
            yield from batch

    def predict_batches(self, images: Iterable[ImageInput], *, topk: int = 5, batch_size: int | None = None,
                        workers: int | None = None) -> Iterator[list[Prediction]]:
        """Predictions for ``images`` in input order, one list per inference batch.

        Up to ``2 * batch_size + workers`` images are read ahead by ``workers`` threads (default: one
        per core) while the runtime runs (:func:`clsx.predict.pipeline.read_ahead`); images that fail
        become Predictions with ``error`` set. The runtime loads while the first images decode.
        """
        k = self.effective_topk(topk)
        size = _positive_int(batch_size, "batch size") if batch_size is not None else self.batch_size
        workers = (_positive_int(workers, "workers") if workers is not None else None) or self.workers or cpu_cores()
        sources = _sources(images)  # a single image is one; anything else that is no image fails here
        self.preprocess_spec  # noqa: B018  resolve (and check) the spec once, before the threads need it
        self.runtime.input_format  # noqa: B018  likewise the input's dtype and layout
        named = ((source_name(src, i), src) for i, src in enumerate(sources))
        pool = TensorPool(self.runtime.input_format.batch_shape(1, self.preprocess_spec.input_size)[1:],
                          self.runtime.input_format.dtype)

        def load(item: tuple[str, ImageInput]) -> tuple[np.ndarray | None, str | None]:
            slot = pool.take()
            tensor, error = decode(lambda src: self.load(src, out=slot), item[1], item[0])
            if tensor is None:
                pool.give([slot])
            return tensor, error

        loaded = read_ahead(named, load, workers=workers, window=default_window(size, workers), on_start=self.runtime.activate)
        batch: np.ndarray | None = None  # one batch buffer, reused
        for chunk in batched(loaded, size):
            tensors = [tensor for _, (tensor, _) in chunk if tensor is not None]
            if tensors and batch is None:
                batch = np.empty((size, *tensors[0].shape), tensors[0].dtype)
            if tensors:
                np.stack(tensors, out=batch[: len(tensors)])
                pool.give(tensors)
            scored = iter(self.classify(batch[: len(tensors)], [name for (name, _), (t, _) in chunk if t is not None], k)
                          if tensors else [])
            yield [next(scored) if tensor is not None else Prediction(source=name, error=error)
                   for (name, _), (tensor, error) in chunk]

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
