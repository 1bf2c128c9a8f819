"""SIGTERM, SIGHUP and Ctrl-C as exceptions, raised only where raising is safe.

The console script turns both signals into :class:`KeyboardInterrupt` (SIGTERM: its subclass
:class:`Terminated`) so every ``finally`` and ``with`` cleans up: temporaries are removed, nothing is
half-published. Python runs a signal's handler between two bytecodes of the main thread, wherever
that is; two places must not take an exception there:

- an import: an exception raised into a native extension's initialisation is not unwound, it ends
  the process (onnx's nanobind module: ``std::terminate`` or SIGSEGV, no line, no cleanup);
- a :func:`held` block: the few statements between creating a temporary and recording it for
  cleanup (a temporary created but not yet known would be left behind).

A signal arriving there is remembered and raised when the block ends, or, for an import, from a
SIGALRM a moment after the import is over.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: Every SIGTERM/SIGHUP/SIGINT received while a command ran (the CLI's last line names the last one).
SIGNALLED: list[int] = []

_pending: list[int] = []
_holding = 0
_RETRY_S = 0.02


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP: the terminal closed), raised where the process is, so every ``finally`` and
    ``with`` cleans up as for Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def install() -> None:
    """Handle SIGTERM, SIGHUP and SIGINT as above, except a signal the process was started with
    ignored (``nohup`` ignores SIGHUP, a background job SIGINT). Main thread only (Python's rule)."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGALRM, _on_retry)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, _on_signal)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """A block that a signal does not interrupt; one that arrived meanwhile is raised when it ends.
    Keep it short (creating a temporary and recording it). A no-op outside the main thread, where
    no handler runs."""
    global _holding
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
        if not _holding and _pending:
            _raise(_pending[-1])


def _on_signal(signum: int, frame: Any) -> None:
    SIGNALLED.append(signum)
    if _holding or _importing(frame):
        _pending.append(signum)
        if not _holding:  # an import ends without telling: look again shortly
            signal.setitimer(signal.ITIMER_REAL, _RETRY_S)
        return
    _raise(signum)


def _on_retry(signum: int, frame: Any) -> None:
    if not _pending or _holding:
        return  # (held: raised when the block ends)
    if _importing(frame):
        signal.setitimer(signal.ITIMER_REAL, _RETRY_S)
        return
    _raise(_pending[-1])


def _raise(signum: int) -> None:
    _pending.clear()
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
