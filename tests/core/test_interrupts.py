"""SIGTERM as an exception only where raising is safe (clsx.core.interrupts)."""

from __future__ import annotations

import os
import signal
import sys
import time
import types

import pytest

from clsx.core import interrupts


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP)}
    signal.signal(signal.SIGHUP, signal.SIG_DFL)  # (as in a terminal, even if the tests run under nohup)
    interrupts.install()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for s, h in saved.items():
        signal.signal(s, h)
    interrupts.SIGNALLED.clear()


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # the handler runs at the next bytecode of the main thread


def test_sigterm_is_terminated_where_the_program_is(handlers):
    with pytest.raises(interrupts.Terminated):
        _deliver(signal.SIGTERM)
    assert interrupts.SIGNALLED[-1] == signal.SIGTERM


def test_a_held_block_finishes_and_the_signal_is_raised_at_its_end(handlers):
    done = []
    with pytest.raises(interrupts.Terminated):
        with interrupts.held():
            _deliver(signal.SIGTERM)
            done.append("recorded")  # the statement after the signal still runs
    assert done == ["recorded"]


def test_nested_held_blocks_raise_once_at_the_outer_end(handlers):
    order = []
    with pytest.raises(interrupts.Terminated):
        with interrupts.held():
            with interrupts.held():
                _deliver(signal.SIGTERM)
            order.append("inner ended")
    assert order == ["inner ended"]


def test_a_signal_during_an_import_is_raised_after_it(handlers, tmp_path, monkeypatch):
    # A module whose body receives the signal: the import must complete (a native module's
    # initialisation cannot be unwound), the exception comes right after it.
    (tmp_path / "clsx_test_slow_module.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(0.05)\nFINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(interrupts.Terminated):
        import clsx_test_slow_module  # noqa: F401
        time.sleep(1)  # the retry (SIGALRM) fires here
    module = sys.modules.pop("clsx_test_slow_module")
    assert isinstance(module, types.ModuleType) and module.FINISHED


def test_sighup_is_terminated_with_its_own_number(handlers):
    with pytest.raises(interrupts.Terminated) as caught:
        _deliver(signal.SIGHUP)
    assert caught.value.signum == signal.SIGHUP
