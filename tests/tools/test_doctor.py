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


def test_preprocessing_says_which_resampler_runs(report, monkeypatch):
    from clsx.core.preprocess import resampler

    assert report["preprocessing"]["resampler"] == resampler()
    assert "resize       " + resampler() in doctor.format_report(report)
    monkeypatch.setenv("CLSX_RESAMPLE", "pillow")
    assert doctor._preprocessing_info()["resampler"] == "pillow"


def test_onnxruntime_providers_are_probed(report):
    import onnxruntime as ort  # installed by the README's install line; a missing one must fail, not skip
    o = report["onnxruntime"]
    assert o["installed"] and o["version"] == ort.__version__
    assert [p["name"] for p in o["providers"]] == ort.get_available_providers()
    cpu = next(p for p in o["providers"] if p["name"] == "CPUExecutionProvider")
    assert cpu["loads"] and cpu["detail"] == "loads"


def test_a_provider_that_falls_back_is_reported_as_not_loading(capsys):
    """ONNX Runtime silently falls back to CPU; the probe must see through that and keep stdout clean."""
    import onnxruntime as ort  # installed by the README's install line; a missing one must fail, not skip
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
    assert set(data) == {"clsx", "python", "platform", "torch", "onnxruntime", "tensorrt", "preprocessing", "build_targets", "run_targets"}
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("clsx ") and any(line.startswith("torch ") for line in lines)
    assert any(line.startswith("tensorrt_rtx") for line in lines)


def _report(*, gpus=(), ort_providers=(("CPUExecutionProvider", True),), flavours=("tensorrt_rtx",)):
    """A diagnose() report as the probes would give it, for the run side."""
    return {
        "torch": {"installed": True, "cuda_available": bool(gpus),
                  "gpus": [{"index": i, "name": "gpu", "compute_capability": cc, "memory_gb": 8.0} for i, cc in enumerate(gpus)]},
        "onnxruntime": {"installed": True, "providers": [{"name": n, "loads": ok, "detail": "loads" if ok else "falls back"} for n, ok in ort_providers]},
        "tensorrt": {f: ({"installed": True, "version": "1.0"} if f in flavours else {"installed": False, "hint": f"pip install '{trt_lib.EXTRAS[f]}'"})
                     for f in trt_lib.FLAVOURS},
    }


def _runs(report):
    return {(r["artifact"], r.get("flavour")): r for r in doctor._run_targets(report)}


def test_run_side_without_a_gpu():
    """No GPU: .onnx and model names run on cpu; a .plan runs nowhere, and the report says why."""
    rep = _report(ort_providers=(("CPUExecutionProvider", True), ("CUDAExecutionProvider", False)))
    runs = _runs(rep)
    assert runs[(".onnx", None)]["devices"] == ["cpu"] and runs[(".onnx", None)]["can_run_here"]
    assert "CUDAExecutionProvider offered but does not load" in runs[(".onnx", None)]["note"]
    assert runs[("model name/.pth", None)]["devices"] == ["cpu"]
    rtx = runs[(".plan", "tensorrt_rtx")]
    assert not rtx["can_run_here"] and rtx["devices"] == [] and rtx["note"].startswith("no GPU here")
    assert not runs[(".plan", "tensorrt")]["can_run_here"] and "not installed" in runs[(".plan", "tensorrt")]["note"]
    rep["build_targets"], rep["run_targets"] = doctor._build_targets(rep["tensorrt"], []), doctor._run_targets(rep)
    rep.update(clsx="0", python="3", platform="x")
    rep["torch"].update(version="2", cuda_build=None)
    rep["onnxruntime"].update(version="1", package="onnxruntime")
    rep["tensorrt"]["tensorrt_rtx"]["version"] = "1.0"
    text = doctor.format_report(rep)
    assert "run here (clsx infer/parity/bench --device ...):" in text
    plan_line = next(line for line in text.splitlines() if ".plan" in line and "tensorrt_rtx" in line)
    assert plan_line.split()[0] == "no" and "no GPU here" in plan_line
    assert any(line.split()[:3] == ["yes", ".onnx", "onnxrt"] and " cpu " in line for line in text.splitlines())


def test_run_side_follows_the_gpus_and_the_providers_that_load():
    ada = _runs(_report(gpus=["sm89"], ort_providers=(("CPUExecutionProvider", True), ("CUDAExecutionProvider", True)),
                        flavours=("tensorrt_rtx", "tensorrt")))
    assert ada[(".onnx", None)]["devices"] == ["cpu", "cuda"] and ada[("model name/.pth", None)]["devices"] == ["cpu", "cuda"]
    assert ada[(".plan", "tensorrt_rtx")]["can_run_here"] and ada[(".plan", "tensorrt")]["devices"] == ["cuda"]
    hopper = _runs(_report(gpus=["sm90"], flavours=("tensorrt_rtx", "tensorrt")))
    assert not hopper[(".plan", "tensorrt_rtx")]["can_run_here"] and "not Hopper" in hopper[(".plan", "tensorrt_rtx")]["note"]
    assert hopper[(".plan", "tensorrt")]["can_run_here"]


def test_run_side_matches_this_machine(report):
    """On the real probes: .onnx runs on the --device values whose provider loads; a .plan only with a GPU."""
    import torch

    runs = _runs(report)
    loading = {p["name"] for p in report["onnxruntime"]["providers"] if p["loads"]}
    assert ("cpu" in runs[(".onnx", None)]["devices"]) == ("CPUExecutionProvider" in loading)
    assert ("cuda" in runs[(".onnx", None)]["devices"]) == ("CUDAExecutionProvider" in loading)
    for flavour in trt_lib.FLAVOURS:
        if not torch.cuda.is_available():
            assert not runs[(".plan", flavour)]["can_run_here"]
