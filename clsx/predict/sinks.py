"""Where predictions go: CSV and JSONL writers, and the loop that streams rows and counts them.

``clsx infer``, ``clsx infer --ray`` and ``clsx demo`` write through these, so their rows are the
same: ``path, top1_index, top1_label, top1_prob, ..., topK_prob, error`` (the C++ tool's columns
too), one row per image, flushed per batch so a run killed midway leaves a valid prefix.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, TextIO

from clsx.core.errors import ClsxError
from clsx.core.progress import Progress
from clsx.predict.prediction import Prediction

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl")


def printable(text: str) -> str:
    """``text`` as it is written to CSV and JSONL: a file name's bytes that are not UTF-8 (Python
    decodes them to lone surrogates) become ``\\xNN`` escapes, so the row can be written and read
    back, and the same name reads the same in both formats."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class CsvWriter:
    """``path, top1_index, top1_label, top1_prob, ..., topK_prob, error`` (the demo's and C++'s columns).

    Every image is one row that Python's ``csv`` module (and any RFC 4180 reader) reads back with
    the right columns, whatever its name holds: fields with commas, quotes or line breaks (``\\n``
    and a lone ``\\r`` alike) are quoted; undecodable bytes are escaped (:func:`printable`). Names
    are written as they are: one starting with ``=``, ``+``, ``-`` or ``@`` is not altered, so a
    spreadsheet that opens the CSV may read it as a formula (the file is data for programs).
    """

    def __init__(self, stream: TextIO, topk: int) -> None:
        self.stream, self.topk = stream, topk
        self._csv = csv.writer(stream, lineterminator="\n")
        self._quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)

    @staticmethod
    def header(topk: int) -> list[str]:
        cols = ["path"]
        for i in range(1, topk + 1):
            cols += [f"top{i}_index", f"top{i}_label", f"top{i}_prob"]
        return cols + ["error"]

    def write_header(self) -> None:
        self._csv.writerow(self.header(self.topk))

    def write(self, pred: Prediction) -> None:
        row: list[Any] = [printable(pred.source)]
        for i in range(self.topk):
            if i < len(pred.indices):
                row += [pred.indices[i], printable(pred.labels[i]), f"{pred.probs[i]:.6f}"]
            else:
                row += ["", "", ""]
        row.append(printable(pred.error or ""))
        # csv quotes a field with "\n" (the line terminator) but not one with a lone "\r", which
        # readers take as a line break: such a row is written fully quoted
        writer = self._quoted if any(isinstance(f, str) and "\r" in f for f in row) else self._csv
        writer.writerow(row)

    def flush(self) -> None:
        self.stream.flush()


class JsonlWriter:
    """One JSON object per line: ``{"path", "topk": [{"index", "label", "prob"}...], "error"}``."""

    def __init__(self, stream: TextIO, topk: int) -> None:
        self.stream, self.topk = stream, topk

    def write_header(self) -> None:
        pass

    def write(self, pred: Prediction) -> None:
        doc = pred.to_dict()
        doc["path"] = printable(doc["path"])
        doc["error"] = printable(doc["error"]) if doc["error"] is not None else None
        for entry in doc["topk"]:
            entry["label"] = printable(entry["label"])
        self.stream.write(json.dumps(doc, ensure_ascii=False) + "\n")  # json escapes CR/LF itself

    def flush(self) -> None:
        self.stream.flush()


def make_writer(fmt: str, stream: TextIO, topk: int) -> CsvWriter | JsonlWriter:
    check_format(fmt)
    return CsvWriter(stream, topk) if fmt == "csv" else JsonlWriter(stream, topk)


def write_predictions(preds: Iterable[Prediction], stream: TextIO, *, topk: int, fmt: str = "csv") -> int:
    """Write a header and rows for ``preds`` (used by the demo); returns the number of rows."""
    writer = make_writer(fmt, stream, topk)
    writer.write_header()
    n = 0
    for n, pred in enumerate(preds, 1):
        writer.write(pred)
    writer.flush()
    return n


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ClsxError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")


@dataclass
class InferSummary:
    images: int
    failed: int
    seconds: float
    runtime: str
    random_weights: bool = False  # the model's weights are untrained (ModelSpec.random_weights)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The summary line on stderr (it says so when the weights were random, asked for or not)."""
        return (f"{self.images} images, {self.failed} failed, {self.seconds:.1f} s, {self.images_per_s:.1f} img/s"
                + (f" [{self.runtime}]" if self.runtime else "")
                + ("; random weights: predictions are meaningless" if self.random_weights else ""))


def stream_rows(batches: Iterable[list[Prediction]], writer: CsvWriter | JsonlWriter, *, progress: bool = False) -> tuple[int, int, float]:
    """Write every prediction of ``batches`` (header first), flushing after each batch; a failed
    image's reason is also a warning on stderr. Returns (rows, failed, seconds).

    The header goes out with the first batch, not before: the model loads (and may fail to: an engine
    without a GPU, ``--device cuda`` without CUDA) while the first batch is computed, and a run that
    fails there must leave nothing on stdout, not a header-only CSV. With no images at all, the header
    alone is written at the end (an empty result, still a valid CSV)."""
    n = failed = 0
    header = False
    start = time.perf_counter()
    with Progress("infer", enabled=progress) as bar:
        for batch in batches:
            if not header:
                writer.write_header()
                header = True
            for pred in batch:
                writer.write(pred)
                if not pred.ok:
                    failed += 1
                    log.warning("%s", pred.error)
            writer.flush()
            n += len(batch)
            bar.advance(len(batch))
    if not header:
        writer.write_header()
        writer.flush()
    if n == 0:
        log.warning("no images found")
    return n, failed, time.perf_counter() - start
