"""``clsx export`` / ``clsx info`` end to end: a user's own model, JSON, bad input, exit status."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from clsx.cli import app
from clsx.core.metadata import read_metadata

runner = CliRunner()

BAD_NET = '''
from torch import nn


class Branchy(nn.Module):
    """Python control flow on a tensor value: the exported graph cannot follow it."""

    def __init__(self, num_classes):
        super().__init__()
        self.head = nn.Linear(3, num_classes)

    def forward(self, x):
        y = self.head(x.mean((2, 3)))
        return y if float(x.abs().mean()) > 1e-3 else -y


def build(num_classes: int = 4):
    return Branchy(num_classes)
'''


@pytest.fixture
def cifar_ckpt(cifar_module, tmp_path):
    """The user's CIFAR net with a checkpoint saved next to it (as after training)."""
    import importlib

    net = importlib.import_module("usernets.cifar").build(num_classes=10)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    ckpt = tmp_path / "ck.pth"
    torch.save(net.state_dict(), ckpt)
    return cifar_module, ckpt


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_export_users_own_model(cifar_ckpt, tmp_path):
    ref, ckpt = cifar_ckpt
    res = runner.invoke(app, ["export", ref, "--weights", str(ckpt), "--input-size", "3x32x32", "--num-classes", "10"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "usernets.cifar_build.onnx"
    assert res.stdout.strip() == "usernets.cifar_build.onnx"  # a default in the current folder: its bare name
    assert "clsx: verify onnx fp32" in res.stderr and "max |Δlogit|" in res.stderr and "top-1 agreement" in res.stderr
    assert "dynamo exporter" in res.stderr
    assert "random weights" not in res.stderr  # its own checkpoint: nothing to warn about
    doc = read_metadata(out)
    assert doc["model"]["source"] == "custom" and doc["model"]["name"] == ref and doc["model"]["num_classes"] == 10
    assert doc["model"]["weights"].startswith("file:ck.pth sha256:")
    assert doc["inputs"][0]["shape"] == ["batch", 3, 32, 32] and doc["outputs"][0]["shape"] == ["batch", 10]
    assert doc["verification"]["passed"] and doc["verification"]["agreement_gated"] is True

    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "usernets.cifar:build (custom), 10 classes" in info.stdout and "PASS" in info.stdout
    assert "input float32 [batch, 3, 32, 32]" in info.stdout and "exporter dynamo" in info.stdout
    as_json = runner.invoke(app, ["info", "--json", str(out)])
    assert json.loads(as_json.stdout) == doc


def test_export_fp16_json_summary(cifar_ckpt, tmp_path):
    ref, ckpt = cifar_ckpt
    (tmp_path / "out").mkdir()
    res = runner.invoke(app, ["export", ref, "-w", str(ckpt), "--input-size", "32", "--num-classes", "10",
                              "--fp16", "-o", "out/net.onnx", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["path"] == "out/net.fp16.onnx" and summary["precision"] == "fp16"  # as the user wrote it
    assert summary["fp32_path"] == "out/net.onnx" and summary["exporter"] == "dynamo"
    assert summary["verification"]["reference"] == "onnx fp32" and summary["fp32_verification"]["reference"] == "torch"
    assert _files(tmp_path / "out") == ["net.fp16.onnx", "net.fp16.onnx.json", "net.onnx", "net.onnx.json"]
    info = runner.invoke(app, ["info", "out/net.fp16.onnx"])
    assert "onnx fp16" in info.stdout and "parent" in info.stdout and "onnxconverter-common" in info.stdout


def test_outputs_go_into_missing_folders_created_with_the_umask(cifar_module, tmp_path):
    """``-o out/lite0.onnx`` with no out/ yet, and ``-o newdir/`` (into this folder): both are written,
    the folders made with the umask's permissions; paths print as given."""
    import os
    import stat

    old = os.umask(0o027)
    try:
        res = runner.invoke(app, ["-q", "export", cifar_module, "--input-size", "32", "--num-classes", "4",
                                  "--no-verify", "--fp16", "-o", "newdir/deeper/"])
        res2 = runner.invoke(app, ["-q", "export", cifar_module, "--input-size", "32", "--num-classes", "4",
                                   "--no-verify", "-o", "out/net.onnx"])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["newdir/deeper/usernets.cifar_build.onnx", "newdir/deeper/usernets.cifar_build.fp16.onnx"]
    assert _files(tmp_path / "newdir" / "deeper") == ["usernets.cifar_build.fp16.onnx", "usernets.cifar_build.fp16.onnx.json",
                                                       "usernets.cifar_build.onnx", "usernets.cifar_build.onnx.json"]
    assert stat.S_IMODE((tmp_path / "newdir").stat().st_mode) == stat.S_IMODE((tmp_path / "newdir" / "deeper").stat().st_mode) == 0o750
    assert res2.exit_code == 0, res2.output
    assert res2.stdout.splitlines() == ["out/net.onnx"] and _files(tmp_path / "out") == ["net.onnx", "net.onnx.json"]


def test_aoti_package_into_a_missing_folder(cifar_module, tmp_path):
    """The filed case: ``clsx export ... --aoti -o out/lite0.onnx`` with no out/ (a small net: ~30 s)."""
    res = runner.invoke(app, ["-q", "export", cifar_module, "--input-size", "32", "--num-classes", "4",
                              "--no-verify", "--aoti", "-o", "out/lite0.onnx"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["out/lite0.onnx", "out/lite0.pt2"]
    assert _files(tmp_path / "out") == ["lite0.onnx", "lite0.onnx.json", "lite0.pt2", "lite0.pt2.json"]


def test_a_folder_path_that_cannot_be_one_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    line = _one_error_line(runner.invoke(app, ["-q", "export", "resnet18", "-o", "afile/"]))
    assert line == "clsx: error: cannot write afile/resnet18.onnx: afile is not a folder"
    line = _one_error_line(runner.invoke(app, ["-q", "export", "resnet18", "-o", "afile/sub/r.onnx"]))
    assert line == "clsx: error: cannot write afile/sub/r.onnx: afile is not a folder"
    line = _one_error_line(runner.invoke(app, ["-q", "export", "resnet18", "-o", "newdir"]))
    assert "must be a .onnx file or a folder" in line and "newdir/" in line
    assert _files(tmp_path) == ["afile"] and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_export_and_info_say_random_weights(cifar_module, tmp_path):
    """`clsx export NAME` without --weights/--pretrained exported an untrained net without a word."""
    small = ["--input-size", "32", "--num-classes", "10", "--no-verify"]
    res = runner.invoke(app, ["export", cifar_module, *small, "-o", "rand.onnx"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "rand.onnx"  # stdout stays the paths (as the user wrote it)
    (warning,) = [line for line in res.stderr.splitlines() if "random weights" in line]
    assert warning.startswith("clsx: warning: random weights: predictions are meaningless; pass --weights FILE or --pretrained")
    assert "--random-weights" in warning and "unless that function loads trained weights itself" in warning
    assert "verification skipped (verify=False)" in res.stderr  # the exporter names its argument, not a flag
    assert read_metadata(tmp_path / "rand.onnx")["model"]["weights"] == "random"

    info = runner.invoke(app, ["info", "rand.onnx"])
    assert info.exit_code == 0, info.output
    (row,) = [line for line in info.stdout.splitlines() if line.startswith("weights")]
    assert "RANDOM (untrained): predictions are meaningless" in row

    asked = runner.invoke(app, ["export", cifar_module, *small, "-o", "asked.onnx", "--random-weights"])
    assert asked.exit_code == 0, asked.output
    assert "warning" not in asked.stderr, asked.stderr
    assert read_metadata(tmp_path / "asked.onnx")["model"]["weights"] == "random"


def test_verification_failure_exits_3(tmp_path, monkeypatch):
    (tmp_path / "badnets.py").write_text(BAD_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        res = runner.invoke(app, ["export", "badnets:build", "--input-size", "3x16x16", "--num-classes", "4"])
    finally:
        sys.modules.pop("badnets", None)
    assert res.exit_code == 3, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("clsx: error: verification failed") and "badnets_build.FAILED.onnx" in last
    assert "falling back to the TorchScript exporter" in res.stderr
    assert _files(tmp_path) == ["badnets.py", "badnets_build.FAILED.onnx", "badnets_build.FAILED.onnx.json"]
    assert res.stdout == ""


def _one_error_line(res) -> str:
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clsx: error: "), res.stderr
    assert res.stdout == ""
    return lines[0]


def test_bad_input_unknown_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(runner.invoke(app, ["-q", "export", "resnet5o"]))
    assert "unknown model 'resnet5o'" in line and "resnet50" in line
    assert _files(tmp_path) == []


def test_bad_input_weights_for_another_architecture(cifar_ckpt, tmp_path):
    _, ckpt = cifar_ckpt
    line = _one_error_line(runner.invoke(app, ["-q", "export", "resnet18", "--weights", str(ckpt)]))
    assert "does not fit this model" in line
    assert _files(tmp_path) == ["ck.pth"]


def test_bad_input_unwritable_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    line = _one_error_line(runner.invoke(app, ["-q", "export", "resnet18", "-o", "afile/r.onnx"]))
    assert "afile is not a folder" in line
    line = _one_error_line(runner.invoke(app, ["-q", "export", "resnet18", "-o", "/proc/r.onnx"]))
    assert "cannot write /proc/r.onnx" in line
    assert _files(tmp_path) == ["afile"]


@pytest.mark.parametrize("existing,args", [
    ("resnet18.onnx", []),
    ("resnet18.onnx.data", []),  # the weights file a graph of 2 GiB or more would write
    ("resnet18.fp16.onnx", ["--fp16"]),
])
def test_bad_input_existing_output(tmp_path, monkeypatch, existing, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / existing).write_bytes(b"mine")
    line = _one_error_line(runner.invoke(app, ["-q", "export", "resnet18", *args]))
    assert f"{existing} already exists; pass --force to overwrite it" in line
    assert (tmp_path / existing).read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == [existing]


@pytest.mark.parametrize("args,needle", [
    (["--opset", "99"], "opset 99 cannot be produced"),
    (["--opset", "5"], "opset 5 cannot be produced"),
    (["--batch", "zero"], "--batch must be 'dynamic' or a positive integer"),
    (["--batch", "4", "--max-batch", "8"], "--max-batch applies to a dynamic batch only"),
    (["--random-weights", "--pretrained"], "--random-weights asks for untrained weights; it cannot go with --pretrained"),
])
def test_bad_input_export_options(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    assert needle in _one_error_line(runner.invoke(app, ["-q", "export", "resnet18", *args]))
    assert _files(tmp_path) == []


def test_info_on_a_file_without_metadata(tmp_path):
    bare = tmp_path / "x.onnx"
    bare.write_bytes(b"not an onnx file")
    line = _one_error_line(runner.invoke(app, ["info", str(bare)]))
    assert "x.onnx" in line
    assert "no such file" in _one_error_line(runner.invoke(app, ["info", str(tmp_path / "missing.onnx")]))


def test_help_lists_export_and_info():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "export" in res.stdout and "info" in res.stdout
    res = runner.invoke(app, ["export", "--help"])
    assert "--fp16" in res.stdout and "--no-verify" in res.stdout and "--max-batch" in res.stdout
