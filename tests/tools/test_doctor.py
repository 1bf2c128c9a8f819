"""`clsx doctor`: reports what this machine really has, probed, not assumed."""

from __future__ import annotations

import importlib
import importlib.util
import json

import pytest
from typer.testing import CliRunner

from clsx.tools import doctor
from clsx.cli import app
from clsx.core.errors import MissingDependencyError
from clsx.runtimes import trt_lib


@pytest.fixture(scope="module")
def report() -> dict:
    return doctor.diagnose()


def test_torch_and_gpus_match_torch(report):
    import torch

    t = report["torch"]
    assert t["installed"] and t["version"] == torch.__version__ and t["cuda_build"] == torch.version.cuda
    assert t["cuda_available"] == torch.cuda.is_available()
    assert len(t["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for g in t["gpus"]:
        major, minor = torch.cuda.get_device_capability(g["index"])
        assert g["compute_capability"] == f"sm{major}{minor}"


def test_onnxruntime_providers_are_probed(report):
    ort = pytest.importorskip("onnxruntime")
    o = report["onnxruntime"]
    assert o["installed"] and o["version"] == ort.__version__
    assert [p["name"] for p in o["providers"]] == ort.get_available_providers()
    cpu = next(p for p in o["providers"] if p["name"] == "CPUExecutionProvider")
    assert cpu["loads"] and cpu["detail"] == "loads"


def test_a_provider_that_falls_back_is_reported_as_not_loading(capsys):
    """ONNX Runtime silently falls back to CPU; the probe must see through that and keep stdout clean."""
    ort = pytest.importorskip("onnxruntime")
    loads, detail = doctor.probe_provider(ort, "NoSuchExecutionProvider", doctor._tiny_model_bytes())
    assert not loads and "CPUExecutionProvider" in detail
    assert capsys.readouterr().out == ""


def test_tensorrt_flavours_match_what_imports(report):
    for flavour in trt_lib.FLAVOURS:
        info = report["tensorrt"][flavour]
        if importlib.util.find_spec(flavour) is not None:
            assert info["installed"] and info["version"] == importlib.import_module(flavour).__version__
        else:
            assert not info["installed"] and info["hint"] == f"pip install '{trt_lib.EXTRAS[flavour]}'"
    targets = {t["target"] for t in report["build_targets"]}
    assert ("rtx" in targets) == report["tensorrt"]["tensorrt_rtx"]["installed"]


def test_missing_tensorrt_gives_the_install_hint_and_no_targets(monkeypatch):
    def missing(flavour):
        raise MissingDependencyError(f"{flavour} is not importable")

    monkeypatch.setattr(trt_lib, "import_tensorrt", missing)
    rep = doctor.diagnose()
    assert rep["tensorrt"]["tensorrt_rtx"] == {
        "installed": False, "hint": "pip install 'clsx[tensorrt-rtx]'", "error": "tensorrt_rtx is not importable"}
    assert rep["build_targets"] == []
    assert "build targets: none" in doctor.format_report(rep)


def test_build_targets_follow_the_gpus():
    both = {"tensorrt_rtx": {"installed": True}, "tensorrt": {"installed": True}}
    ada = {t["target"]: t for t in doctor._build_targets(both, ["sm89"])}
    assert ada["rtx"]["can_build"] and ada["rtx"]["can_run_here"]
    assert ada["tensorrt"]["can_build"] and ada["tensorrt"]["compute_capabilities"] == ["sm89"]
    hopper = {t["target"]: t for t in doctor._build_targets(both, ["sm90"])}
    assert hopper["rtx"]["can_build"] and not hopper["rtx"]["can_run_here"]
    cpu = {t["target"]: t for t in doctor._build_targets(both, [])}
    assert cpu["rtx"]["can_build"] and not cpu["tensorrt"]["can_build"]


def test_cli_doctor_text_and_json():
    runner = CliRunner()
    res = runner.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == {"clsx", "python", "platform", "torch", "onnxruntime", "tensorrt", "build_targets"}
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("clsx ") and any(line.startswith("torch ") for line in lines)
    assert any(line.startswith("tensorrt_rtx") for line in lines)
