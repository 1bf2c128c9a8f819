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


class Phase:
    """One long step on stderr: ``clsx: exporting (dynamo) ...`` when it starts, a live elapsed-time
    line while it runs when stderr is a terminal, ``clsx: exporting (dynamo): 31.2 s`` when it ends.

    ``with Phase("exporting", log) as phase: ...``; ``phase.seconds`` afterwards. Phases record their
    times in :data:`timings` (cleared by :func:`reset_timings`), so a command can print each step's time
    at the end. A phase that fails says so (``failed after 3.1 s``) and re-raises.
    """

    def __init__(self, what: str, logger: Any, *, enabled: bool | None = None) -> None:
        self.what, self.log = what, logger
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.seconds = 0.0
        self._status: Any = None

    def __enter__(self) -> "Phase":
        self._start = time.perf_counter()
        if self.enabled:
            from rich.console import Console

            self._status = Console(stderr=True).status(f"{self.what} ...")
            self._status.start()
            self._tick()
        else:
            self.log.info("%s ...", self.what)
        return self

    def _tick(self) -> None:
        import threading

        def loop() -> None:
            while self._status is not None:
                self._status.update(f"{self.what} ... {time.perf_counter() - self._start:.0f} s")
                time.sleep(1.0)

        threading.Thread(target=loop, daemon=True, name="clsx-phase").start()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.seconds = time.perf_counter() - self._start
        status, self._status = self._status, None
        if status is not None:
            status.stop()
        if exc_type is None:
            timings.append((self.what, self.seconds))
            self.log.info("%s: %.1f s", self.what, self.seconds)
        else:
            self.log.info("%s: failed after %.1f s", self.what, self.seconds)


#: (step, seconds) of the phases finished in this process, in order (see :class:`Phase`)
timings: list[tuple[str, float]] = []


def reset_timings() -> None:
    timings.clear()


def format_timings(steps: list[tuple[str, float]] | None = None) -> str:
    """``exporting 31.2 s, FP16 conversion 4.0 s, ...`` (the end-of-command summary)."""
    return ", ".join(f"{what} {seconds:.1f} s" for what, seconds in (timings if steps is None else steps))
