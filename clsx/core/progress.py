"""Progress on stderr: a live rich line when stderr is a terminal, nothing otherwise.

One class for every long loop (``clsx infer``, ``--ray``, calibration): a count, a rate, the elapsed
time and, when the total is known, a bar. Logs say the rest when stderr is a file or a pipe.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """``with Progress("infer", unit="images") as bar: bar.advance(n)``; a no-op when disabled.

    ``enabled`` defaults to "stderr is a terminal"; ``total`` (optional) shows a bar.
    """

    def __init__(self, what: str, *, total: int | None = None, unit: str = "images", enabled: bool | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._task: Any = None
        self._start = 0.0
        self.done = 0

    def __enter__(self) -> "Progress":
        self._start = time.perf_counter()
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress as RichProgress, SpinnerColumn, TextColumn, TimeElapsedColumn

            columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
            if self.total is not None:
                columns.append(BarColumn())
            columns += [TextColumn("{task.completed}" + (f"/{self.total}" if self.total is not None else "") + f" {self.unit}"),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
            self._bar = RichProgress(*columns, console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, rate="")
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            rate = self.done / max(time.perf_counter() - self._start, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:.1f} {self.unit}/s")

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
