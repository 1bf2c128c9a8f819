"""`clsx export --int8 --calib-dir --engine`: export, calibrate and compile in one command."""

import json

from typer.testing import CliRunner

from clsx.zoo import samples
from clsx.cli import app
from clsx.core.metadata import read_metadata

runner = CliRunner()


def test_export_int8_engine_chain(tmp_path, photos, monkeypatch):
    monkeypatch.chdir(tmp_path)
    samples.write_photo_variants(tmp_path / "imgs", photos[:6], per_photo=2, seed=0, size=96)
    res = runner.invoke(app, ["export", "resnet18", "--input-size", "64", "--num-classes", "10", "--no-verify",
                              "--int8", "--calib-dir", str(tmp_path / "imgs"), "--calib-num", "8",
                              "--engine", "--engine-max-batch", "8", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    int8, plan = tmp_path / "resnet18.int8.onnx", tmp_path / "resnet18.int8.plan"
    # derived from the default output in the current folder: bare names, as printed
    assert summary["int8"]["path"] == "resnet18.int8.onnx" and summary["engine"]["path"] == "resnet18.int8.plan"
    assert read_metadata(int8)["precision"] == "int8"
    side = read_metadata(plan)
    assert side["artifact"] == "tensorrt" and side["precision"] == "int8" and plan.stat().st_size > 0


def test_int8_requires_calib_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["export", "resnet18", "--int8"])
    assert res.exit_code == 2 and "--calib-dir" in res.output
    assert not list(tmp_path.iterdir())
