"""The one bounded decode-ahead pipeline: images are decoded and preprocessed in worker threads
(Pillow and numpy release the GIL) while the caller runs the model on the previous batch.

:func:`read_ahead` is used by ``clsx infer`` and :meth:`Classifier.predict` (through
:meth:`Classifier.predict_batches`), ``clsx parity``, ``clsx bench``, the calibration reader and the
``--ray`` workers' reads. At most ``window`` items are in flight, so memory stays flat for any
number of images, and results come back in input order. :func:`decode` is the one place where a
file that cannot be read becomes a reason (a row's ``error``) instead of an exception.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from clsx.core.errors import ImageError
from clsx.core.machine import cpu_cores
from clsx.core.preprocess import ImageInput

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def decode(load: Callable[[ImageInput], np.ndarray], src: ImageInput, name: str) -> tuple[np.ndarray | None, str | None]:
    """``load(src)`` for one image: (tensor, None), or (None, the reason it failed)."""
    try:
        return load(src), None
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # one odd file must not end a 100k-image run; the reason goes in its row
        log.debug("unexpected error reading %s", name, exc_info=True)
        return None, f"{name}: cannot read image ({type(exc).__name__}: {exc})"


def default_window(batch_size: int, workers: int) -> int:
    """How many items may be in flight: two batches plus one per worker."""
    return 2 * batch_size + workers


def read_ahead(
    items: Iterable[T],
    fn: Callable[[T], R],
    *,
    workers: int | None = None,
    window: int | None = None,
    on_start: Callable[[], None] | None = None,
    name: str = "clsx-decode",
) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in input order, ``fn`` running on ``workers`` threads (default: one per
    core) at most ``window`` items ahead of the consumer (default: ``2 * 16 + workers``).

    ``on_start`` runs once the first items are submitted (e.g. load a model while they decode). A
    consumer that stops early cancels what has not started.
    """
    workers = workers or cpu_cores()
    window = max(1, window or default_window(16, workers))
    source = iter(items)
    pending: deque[tuple[T, Future]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:

        def top_up() -> None:
            while len(pending) < window:
                try:
                    item = next(source)
                except StopIteration:
                    return
                pending.append((item, pool.submit(fn, item)))

        top_up()
        if pending and on_start is not None:
            on_start()
        try:
            while pending:
                item, fut = pending.popleft()
                top_up()
                yield item, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
