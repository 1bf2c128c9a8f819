"""The CLI: stdout carries data, stderr logs; user errors are one line with exit status 1."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from clsx.cli import app

runner = CliRunner()


def test_models_table_and_json():
    res = runner.invoke(app, ["models", "resnet*"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "INPUT", "PARAMS"]
    assert any(line.split()[:4] == ["tv:resnet50", "torchvision", "3x224x224", "25.6M"] for line in lines)
    assert all(line.split(":", 1)[1].startswith("resnet") for line in lines[1:])
    res = runner.invoke(app, ["models", "--json", "--source", "timm", "legacy_se*"])
    data = json.loads(res.stdout)
    assert {d["name"] for d in data} >= {"legacy_seresnet50", "legacy_senet154"}
    assert all(d["source"] == "timm" and len(d["input_size"]) == 3 for d in data)


def test_models_names_each_source_once():
    """`clsx models resnet18` listed `resnet18` three times without saying which is which."""
    res = runner.invoke(app, ["models", "resnet18"])
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    names = [r[0] for r in rows]
    assert names[:2] == ["tv:resnet18", "timm:resnet18"] and len(names) == len(set(names))
    assert all(name.split(":")[0] == {"torchvision": "tv", "timm": "timm", "pretrainedmodels": "pm"}[src] for name, src, *_ in rows)
    data = json.loads(runner.invoke(app, ["models", "resnet18", "--json"]).stdout)
    assert [d["qualified"] for d in data] == names
    assert all(set(d) >= {"name", "source", "input_size", "params"} and d["name"] == "resnet18" for d in data)


def test_unknown_model_suggests_qualified_names_once():
    res = runner.invoke(app, ["export", "resnt50"])
    assert res.exit_code == 1 and res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("clsx: error: unknown model 'resnt50'; did you mean tv:resnet50, timm:resnet50")
    suggested = line.split("did you mean ")[1].rstrip("?").split(", ")
    assert len(suggested) == len(set(suggested))


def test_user_error_is_one_line_exit_1():
    res = runner.invoke(app, ["models", "--source", "caffe"])
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr.strip() == "clsx: error: unknown source 'caffe': use torchvision (tv), timm or pretrainedmodels (pm)"


def test_usage_error_exit_2():
    res = runner.invoke(app, ["models", "--no-such-flag"])
    assert res.exit_code == 2


def test_help_is_fast_and_imports_no_backend():
    code = "import sys, clsx.cli; bad = [m for m in ('torch', 'onnxruntime', 'timm', 'tensorrt_rtx') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    res = subprocess.run([sys.executable, "-m", "clsx.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "models" in res.stdout


def test_demo_prints_top5_csv():
    res = runner.invoke(app, ["demo"])
    assert res.exit_code == 0, res.output
    rows = [r.split(",") for r in res.stdout.splitlines()]
    assert rows[0][:4] == ["path", "top1_index", "top1_label", "top1_prob"] and rows[0][-1] == "error"
    coffee = next(r for r in rows if r[0].endswith("coffee.png"))
    assert coffee[1:3] == ["967", "espresso"]
    assert "tf_efficientnet_lite0" in res.stderr
    # the front door: no flag the user never passed, no warning about clsx's own sample weights,
    # no random-weights warning (they are real), and a summary line like infer's
    assert "--no-verify" not in res.stderr and "verification skipped" not in res.stderr and "-> PASS" in res.stderr  # verified, like export
    assert "warning" not in res.stderr and "by position" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"clsx: {len(rows) - 1} images, 0 failed, ") and " img/s [onnxruntime " in last, last
    assert "random weights" not in last


def _models_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.rstrip().endswith(" models")]


def test_clsx_records_appear_once_whatever_the_root_logger_has():
    """A dependency's logging.basicConfig (ONNX Runtime's matmul_nbits_quantizer calls it on import)
    adds a root handler: clsx records must not reach it, so each log line shows once."""
    import logging

    seen: list[logging.LogRecord] = []

    class Root(logging.Handler):
        def emit(self, record):
            seen.append(record)

    root, handler = logging.getLogger(), Root()
    old_level = root.level
    root.addHandler(handler)  # what basicConfig does
    root.setLevel(logging.INFO)
    try:
        res = runner.invoke(app, ["models", "resnet18"])
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert res.exit_code == 0, res.output
    assert len(_models_lines(res.stderr)) == 1 and _models_lines(res.stderr)[0].startswith("clsx: ")
    assert [r for r in seen if r.name.startswith("clsx")] == []
    clsx_logger = logging.getLogger("clsx")  # the CLI's setup lasted for the command only
    assert clsx_logger.propagate and not any(isinstance(h, logging.StreamHandler) and h.stream is sys.stderr for h in clsx_logger.handlers)


def test_basicconfig_at_import_does_not_double_lines():
    """The real thing, in a fresh process: ONNX Runtime's module configures the root logger first."""
    code = ("import sys, onnxruntime.quantization.matmul_nbits_quantizer\n"
            "from clsx.cli import main\nsys.argv = ['clsx', 'models', 'resnet18']\nmain()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert len(_models_lines(res.stderr)) == 1, res.stderr


def _all_commands():
    import typer.main

    return sorted(typer.main.get_command(app).commands)


def test_flags_show_no_type_in_help():
    """``--force <bool>`` reads as if a value were wanted: no flag of any command shows a type."""
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "<bool>" not in res.stdout and "<int>" not in res.stdout  # -q, -v (counted), --help
    commands = _all_commands()
    assert {"export", "infer", "build", "calib", "doctor", "triton-repo"} <= set(commands)
    for name in commands:
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (name, res.output)
        assert "<bool>" not in res.stdout, name
        assert "--help" in res.stdout
    res = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"})
    out_line = next(line for line in res.stdout.splitlines() if "--output" in line)
    assert "<path>" in out_line  # options that take a value still say what


def test_ambiguous_input_size_is_one_line():
    res = runner.invoke(app, ["export", "resnet18", "--input-size", "3x32"])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "clsx: error: input size '3x32' is read as HxW (a side of 3 px); S and HxW sides are at least 8 px: "
        "for channels x height x width write CxHxW, e.g. 3x32x32"]


def test_a_librarys_python_warning_is_one_clsx_line(tmp_path):
    """A warning raised by code clsx runs (here the user's own model function) is one ``clsx: warning:``
    line naming where it came from, not Python's path:line and source line on stderr."""
    import os
    from pathlib import Path

    pkg = tmp_path / "usernets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "warny.py").write_text(
        "import warnings\n\nfrom torch import nn\n\n\ndef noisy(num_classes=10):\n"
        "    warnings.warn('odd layer kept as is\\nsecond line of detail', UserWarning)\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))\n")
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(repo)]))
    res = subprocess.run([sys.executable, "-m", "clsx", "export", "usernets.warny:noisy", "--random-weights",
                          "--input-size", "3x32x32", "--num-classes", "10", "-o", str(tmp_path / "net.onnx")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "clsx: warning: odd layer kept as is (UserWarning from usernets)" in res.stderr.splitlines()
    assert "second line" not in res.stderr and "warnings.warn" not in res.stderr and "warny.py" not in res.stderr
