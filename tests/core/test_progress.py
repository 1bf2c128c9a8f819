"""Progress on long steps: a phase line with its time on stderr, each step's time at the end."""

from __future__ import annotations

import logging

import pytest

from clsx.core import progress
from clsx.core.progress import Phase, format_timings


def test_phase_says_when_it_starts_and_how_long_it_took(caplog):
    log = logging.getLogger("clsx.test")
    start = len(progress.timings)
    with caplog.at_level(logging.INFO, logger="clsx"):
        with Phase("converting", log, enabled=False) as phase:
            pass
    assert [r.getMessage() for r in caplog.records] == ["converting ...", f"converting: {phase.seconds:.1f} s"]
    assert progress.timings[start:] == [("converting", phase.seconds)]


def test_a_failed_phase_says_so_and_is_not_counted(caplog):
    log = logging.getLogger("clsx.test")
    start = len(progress.timings)
    with caplog.at_level(logging.INFO, logger="clsx"), pytest.raises(ValueError):
        with Phase("building", log, enabled=False):
            raise ValueError("boom")
    assert caplog.records[-1].getMessage().startswith("building: failed after ")
    assert progress.timings[start:] == []


def test_live_phase_on_a_terminal_stops_cleanly():
    log = logging.getLogger("clsx.test")
    with Phase("compiling", log, enabled=True) as phase:  # rich status on stderr, ticking in a thread
        pass
    assert phase._status is None and phase.seconds >= 0


def test_format_timings():
    assert format_timings([("exporting", 31.24), ("FP16", 4.0)]) == "exporting 31.2 s, FP16 4.0 s"


def test_export_chain_reports_each_step(tmp_path, caplog):
    from clsx.core.spec import PreprocessOverrides
    from clsx.exporter.chain import ExportOptions, export_chain

    opts = ExportOptions(num_classes=10, preprocess=PreprocessOverrides(input_size=(3, 32, 32)), fp16=True,
                         verify=False, out=tmp_path / "r18.onnx")
    with caplog.at_level(logging.INFO, logger="clsx"):
        res = export_chain("resnet18", opts)
    steps = [s["step"] for s in res.summary["steps"]]
    assert steps[0].startswith("exporting tv:resnet18 to ONNX") and "converting to FP16" in steps
    assert any(r.getMessage().startswith("steps: exporting") for r in caplog.records)
