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
    assert any(line.split()[:4] == ["resnet50", "torchvision", "3x224x224", "25.6M"] for line in lines)
    assert all(line.startswith("resnet") for line in lines[1:])
    res = runner.invoke(app, ["models", "--json", "--source", "timm", "legacy_se*"])
    data = json.loads(res.stdout)
    assert {d["name"] for d in data} >= {"legacy_seresnet50", "legacy_senet154"}
    assert all(d["source"] == "timm" and len(d["input_size"]) == 3 for d in data)


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
