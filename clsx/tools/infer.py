"""``clsx infer``: classify every image under some paths and stream top-k rows.

Listing (:mod:`clsx.predict.listing`), the decode-ahead pipeline (:meth:`Classifier.predict_batches`)
and the writers (:mod:`clsx.predict.sinks`) are shared with the Python API, ``--ray`` and the demo;
this module adds the command's checks, the output file and the summary.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterable, TextIO

from clsx.core.errors import ClsxError
from clsx.core.files import GuardedStream, check_writable, refuse_existing, refuse_folder_path, text_output
from clsx.predict.classifier import Classifier
from clsx.predict.listing import iter_image_paths
from clsx.predict.sinks import InferSummary, check_format, make_writer, stream_rows

log = logging.getLogger(__name__)


def infer_to_stream(
    classifier: Classifier,
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
    batches = classifier.predict_batches(iter_image_paths(*paths), topk=k, batch_size=batch_size, workers=workers)
    n, failed, seconds = stream_rows(batches, make_writer(fmt, stream, k), progress=progress)
    return InferSummary(images=n, failed=failed, seconds=seconds, runtime=classifier.runtime.describe() if n else "",
                        random_weights=n > 0 and classifier.runtime.spec.random_weights)


def check_request(paths: Iterable[str | os.PathLike], *, output: str | os.PathLike | None, force: bool, fmt: str,
                  batch_size: int, is_remote=lambda p: False) -> Path | None:
    """What ``clsx infer`` checks before loading anything; returns the output path (or None for stdout)."""
    check_format(fmt)
    if batch_size < 1:
        raise ClsxError(f"batch size must be at least 1; got {batch_size}")
    out_path = Path(output) if output is not None else None
    if out_path is not None:
        refuse_folder_path(output, example=f"rows.{fmt}")
        refuse_existing([out_path], force=force)
        check_writable(out_path)  # a missing folder is created when the rows are written
    for p in paths:  # a missing PATH fails now, before the model loads
        if not is_remote(p) and not os.path.lexists(p):
            raise ClsxError(f"{p}: no such file or directory")
    return out_path


def finish(summary: InferSummary, *, strict: bool) -> InferSummary:
    """The summary line on stderr; with ``strict``, ClsxError when any image failed."""
    log.info("%s", summary.line())
    if strict and summary.failed:
        raise ClsxError(f"{summary.failed} of {summary.images} images could not be classified (--strict)")
    return summary


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
    from clsx.runtimes.registry import open as open_runtime

    out_path = check_request(paths, output=output, force=force, fmt=fmt, batch_size=batch_size)
    if progress is None:
        progress = sys.stderr.isatty()

    runtime = open_runtime(target, backend=backend, device=device, **open_kw)
    classifier = Classifier(runtime, batch_size=batch_size, workers=workers)
    try:
        if out_path is None:
            summary = infer_to_stream(classifier, paths, GuardedStream(stdout or sys.stdout), topk=topk, fmt=fmt,
                                      batch_size=batch_size, workers=workers, progress=progress)
        else:
            with text_output(out_path, force=force) as f:
                summary = infer_to_stream(classifier, paths, f, topk=topk, fmt=fmt,
                                          batch_size=batch_size, workers=workers, progress=progress)
    finally:
        runtime.deactivate()
    return finish(summary, strict=strict)
