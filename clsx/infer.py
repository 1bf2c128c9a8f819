"""Folder inference: lazy listing -> threaded decode/preprocess -> batched inference -> streamed rows.

``clsx infer ARTIFACT PATH...`` and :meth:`clsx.Classifier.predict` share this pipeline:

- :func:`iter_image_paths` walks folders lazily, depth first, each folder's entries sorted, so paths
  come out in sorted order (by path components, as ``sorted(list_images(...))``) without listing the
  whole tree first; several roots are merged into one sorted stream.
- :func:`predict_batches` decodes and preprocesses in a thread pool (Pillow and numpy release the
  GIL) while the runtime runs the previous batch. At most ``2 * batch_size + workers`` images are in
  flight, so memory stays flat however many files there are.
- :class:`CsvWriter` / :class:`JsonlWriter` write one row per image and flush after every batch, so
  a run killed midway leaves a valid prefix on stdout.
"""

from __future__ import annotations

import csv
import heapq
import json
import logging
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator, TextIO

import numpy as np

from clsx.errors import ClsxError, ImageError, OutputExistsError
from clsx.preprocess import IMAGE_EXTENSIONS, ImageInput
from clsx.runtimes.base import cpu_cores

if TYPE_CHECKING:
    from clsx.classifier import Classifier, Prediction

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl")


# ---------------------------------------------------------------------------------------------
# Listing


def iter_image_paths(*paths: str | os.PathLike, recursive: bool = True) -> Iterator[Path]:
    """Image files under ``paths`` in sorted order, lazily.

    Files named explicitly are taken whatever their extension; inside folders only image
    extensions count. Symlinked folders are followed unless they lead back to a folder already on
    the current walk (a symlink loop), which is skipped with a warning. A folder that cannot be
    listed is skipped with a warning. Missing paths raise ClsxError before anything runs.
    """
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists() and not root.is_symlink():
            raise ClsxError(f"{root}: no such file or directory")
    walks = [_walk(root, recursive) if root.is_dir() else iter([root]) for root in sorted(set(roots), key=_key)]
    last: Path | None = None
    for path in heapq.merge(*walks, key=_key):
        if path != last:  # overlapping roots (a folder and a file inside it) give each file once
            yield path
        last = path


def _key(p: Path) -> tuple[str, ...]:
    return p.parts


def _walk(folder: Path, recursive: bool, ancestors: frozenset[tuple[int, int]] = frozenset()) -> Iterator[Path]:
    try:
        st = folder.stat()
        ident = (st.st_dev, st.st_ino)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        log.warning("%s: cannot list folder (%s); skipped", folder, exc.strerror or exc)
        return
    if ident in ancestors:
        log.warning("%s: symlink loop (leads back to a folder being walked); skipped", folder)
        return
    here = ancestors | {ident}
    for entry in entries:
        path = folder / entry.name
        try:
            is_dir = entry.is_dir()  # follows symlinks; False for a broken or looping link
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(path, recursive, here)
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
            yield path


# ---------------------------------------------------------------------------------------------
# The pipeline


def _load(classifier: "Classifier", src: ImageInput, name: str) -> tuple[np.ndarray | None, str | None]:
    """Decode + preprocess one image in a worker thread: (tensor, None) or (None, reason)."""
    try:
        return classifier.load(src), None
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # one odd file must not end a 100k-image run; the reason goes in its row
        log.debug("unexpected error reading %s", name, exc_info=True)
        return None, f"{name}: cannot read image ({type(exc).__name__}: {exc})"


def predict_batches(
    classifier: "Classifier",
    images: Iterable[ImageInput],
    *,
    topk: int = 5,
    batch_size: int = 32,
    workers: int | None = None,
) -> Iterator[list["Prediction"]]:
    """Predictions for ``images`` in input order, one list per inference batch.

    Up to ``2 * batch_size + workers`` images are read ahead by ``workers`` threads (default: one per
    core) while the runtime runs; images that fail become Predictions with ``error`` set.
    """
    from clsx.classifier import Prediction, source_name

    k = classifier.effective_topk(topk)
    classifier.preprocess_spec  # noqa: B018  resolve the spec once, before the threads need it
    workers = workers or cpu_cores()
    window = 2 * batch_size + workers
    items = enumerate(images)
    pending: deque[tuple[str, Future]] = deque()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clsx-decode") as pool:

        def top_up() -> None:
            while len(pending) < window:
                try:
                    i, src = next(items)
                except StopIteration:
                    return
                name = source_name(src, i)
                pending.append((name, pool.submit(_load, classifier, src, name)))

        top_up()
        if pending:
            classifier.runtime.activate()  # loads while the first images decode
        try:
            while pending:
                chunk = []
                while pending and len(chunk) < batch_size:
                    name, fut = pending.popleft()
                    top_up()
                    chunk.append((name, *fut.result()))
                good = [(name, t) for name, t, _ in chunk if t is not None]
                scored = iter(classifier.classify(np.stack([t for _, t in good]), [n for n, _ in good], k) if good else [])
                out = [next(scored) if tensor is not None else Prediction(source=name, error=error) for name, tensor, error in chunk]
                yield out
        finally:
            for _, fut in pending:  # a consumer that stops early: do not decode the rest
                fut.cancel()


# ---------------------------------------------------------------------------------------------
# Writers


class CsvWriter:
    """``path, top1_index, top1_label, top1_prob, ..., topK_prob, error`` (the demo's and C++'s columns)."""

    def __init__(self, stream: TextIO, topk: int) -> None:
        self.stream, self.topk = stream, topk
        self._csv = csv.writer(stream, lineterminator="\n")

    @staticmethod
    def header(topk: int) -> list[str]:
        cols = ["path"]
        for i in range(1, topk + 1):
            cols += [f"top{i}_index", f"top{i}_label", f"top{i}_prob"]
        return cols + ["error"]

    def write_header(self) -> None:
        self._csv.writerow(self.header(self.topk))

    def write(self, pred: "Prediction") -> None:
        row: list[Any] = [pred.source]
        for i in range(self.topk):
            if i < len(pred.indices):
                row += [pred.indices[i], pred.labels[i], f"{pred.probs[i]:.6f}"]
            else:
                row += ["", "", ""]
        self._csv.writerow(row + [pred.error or ""])

    def flush(self) -> None:
        self.stream.flush()


class JsonlWriter:
    """One JSON object per line: ``{"path", "topk": [{"index", "label", "prob"}...], "error"}``."""

    def __init__(self, stream: TextIO, topk: int) -> None:
        self.stream, self.topk = stream, topk

    def write_header(self) -> None:
        pass

    def write(self, pred: "Prediction") -> None:
        self.stream.write(json.dumps(pred.to_dict(), ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self.stream.flush()


def make_writer(fmt: str, stream: TextIO, topk: int) -> CsvWriter | JsonlWriter:
    if fmt not in FORMATS:
        raise ClsxError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
    return CsvWriter(stream, topk) if fmt == "csv" else JsonlWriter(stream, topk)


def write_predictions(preds: Iterable["Prediction"], stream: TextIO, *, topk: int, fmt: str = "csv") -> int:
    """Write a header and rows for ``preds`` (used by the demo); returns the number of rows."""
    writer = make_writer(fmt, stream, topk)
    writer.write_header()
    n = 0
    for n, pred in enumerate(preds, 1):
        writer.write(pred)
    writer.flush()
    return n


# ---------------------------------------------------------------------------------------------
# clsx infer


@dataclass
class InferSummary:
    images: int
    failed: int
    seconds: float
    runtime: str

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def infer_to_stream(
    classifier: "Classifier",
    paths: Iterable[str | os.PathLike],
    stream: TextIO,
    *,
    topk: int = 5,
    fmt: str = "csv",
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = False,
) -> InferSummary:
    """Classify every image under ``paths`` and stream rows to ``stream``, flushed per batch."""
    k = classifier.effective_topk(topk)
    writer = make_writer(fmt, stream, k)
    writer.write_header()
    writer.flush()
    n = failed = 0
    start = time.perf_counter()
    with _Progress(progress) as bar:
        for batch in predict_batches(classifier, iter_image_paths(*paths), topk=k, batch_size=batch_size, workers=workers):
            for pred in batch:
                writer.write(pred)
                if not pred.ok:
                    failed += 1
                    log.warning("%s", pred.error)
            writer.flush()
            n += len(batch)
            bar.advance(len(batch))
    seconds = time.perf_counter() - start
    if n == 0:
        log.warning("no images found")
    return InferSummary(images=n, failed=failed, seconds=seconds, runtime=classifier.runtime.describe() if n else "")


def run_infer(
    target: Any,
    paths: list[str | os.PathLike],
    *,
    output: str | os.PathLike | None = None,
    stdout: TextIO | None = None,
    force: bool = False,
    strict: bool = False,
    topk: int = 5,
    fmt: str = "csv",
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool | None = None,
    backend: str | None = None,
    device: str | None = None,
    **open_kw: Any,
) -> InferSummary:
    """``clsx infer``: rows to ``output`` (written atomically) or to ``stdout`` (streamed).

    With ``strict``, any image that failed makes it raise ClsxError (exit 1) after all rows are out.
    """
    from clsx.classifier import Classifier
    from clsx.runtimes.registry import open as open_runtime

    if fmt not in FORMATS:
        raise ClsxError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
    if batch_size < 1:
        raise ClsxError(f"batch size must be at least 1; got {batch_size}")
    out_path = Path(output) if output is not None else None
    if out_path is not None and out_path.exists() and not force:
        raise OutputExistsError(f"{out_path} exists; pass --force to overwrite it")
    for p in paths:  # a missing PATH fails now, before the model loads
        if not os.path.lexists(p):
            raise ClsxError(f"{p}: no such file or directory")
    if progress is None:
        progress = sys.stderr.isatty()

    runtime = open_runtime(target, backend=backend, device=device, **open_kw)
    classifier = Classifier(runtime, batch_size=batch_size, workers=workers)
    try:
        if out_path is None:
            summary = infer_to_stream(classifier, paths, stdout or sys.stdout, topk=topk, fmt=fmt,
                                      batch_size=batch_size, workers=workers, progress=progress)
        else:
            with _atomic_text(out_path) as f:
                summary = infer_to_stream(classifier, paths, f, topk=topk, fmt=fmt,
                                          batch_size=batch_size, workers=workers, progress=progress)
    finally:
        runtime.deactivate()
    log.info(
        "%d images, %d failed, %.1f s, %.1f img/s%s",
        summary.images, summary.failed, summary.seconds, summary.images_per_s,
        f" [{summary.runtime}]" if summary.runtime else "",
    )
    if strict and summary.failed:
        raise ClsxError(f"{summary.failed} of {summary.images} images could not be classified (--strict)")
    return summary


class _atomic_text:
    """A text file written under a temporary name in the target folder, renamed into place on success."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        self.f: IO[str] | None = None

    def __enter__(self) -> TextIO:
        try:
            self.f = open(self.tmp, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise ClsxError(f"cannot write {self.target}: {exc.strerror or exc}") from None
        return self.f  # type: ignore[return-value]

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        assert self.f is not None
        self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.target)
        else:
            self.tmp.unlink(missing_ok=True)


class _Progress:
    """A rich progress line on stderr (count, rate); a no-op when disabled (stderr not a TTY)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.completed} images"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("infer", total=None, rate="")
            self._start = time.perf_counter()
        return self

    def advance(self, n: int) -> None:
        if self._bar is not None:
            done = self._bar.tasks[0].completed + n
            rate = done / max(time.perf_counter() - self._start, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:.1f} img/s")

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
