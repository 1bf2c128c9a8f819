"""Graphs of 2 GiB or more: ``model.onnx`` (graph + metadata) + ONE ``model.onnx.data`` (weights).

The 2 GiB limit is a module constant (:data:`clsx.exporter.artifacts.SINGLE_FILE_LIMIT`); these
tests lower it to 200 kB so a 0.5 MB model takes the external-data path end to end in seconds:
export, checker and ONNX Runtime by path, metadata readable without the weights, ``clsx info``,
FP16 (half the size: back to one self-contained file), refusals and no partial files.
"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from clsx.cli import app
from clsx.core.errors import GateFailedError, OutputExistsError
from clsx.exporter import artifacts, convert_fp16, export_onnx, onnx_export
from clsx.core.metadata import read_metadata, read_onnx_metadata
from clsx.core.spec import ModelSpec, PreprocessSpec
from clsx.zoo import LoadedModel

LIMIT = 200_000  # bytes: both the FP32 graph (~520 kB of weights) and its FP16 version (~260 kB) are above it
FP16_LIMIT = 400_000  # between the two: FP32 external, FP16 self-contained


@pytest.fixture(scope="module")
def wide_head():
    """A classifier whose weights (130 k parameters, mostly a 128 -> 1000 head) dwarf its graph."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                        nn.Flatten(), nn.Linear(128, 1000)).eval()
    spec = ModelSpec(name="wide_head", source="custom", num_classes=1000,
                     preprocess=PreprocessSpec(input_size=(3, 32, 32), resize_size=36))
    return LoadedModel(module=net, spec=spec)


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_large_graph_is_written_with_one_data_file(tmp_path, wide_head, monkeypatch, caplog):
    monkeypatch.setattr(artifacts, "SINGLE_FILE_LIMIT", FP16_LIMIT)
    caplog.set_level("INFO")
    res = export_onnx(wide_head, tmp_path / "big.onnx", fp16=True, verify_photos=2)
    assert _files(tmp_path) == ["big.fp16.onnx", "big.fp16.onnx.json", "big.onnx", "big.onnx.data", "big.onnx.json"]
    graph_file, data_file = tmp_path / "big.onnx", tmp_path / "big.onnx.data"
    assert graph_file.stat().st_size < 50_000 < 500_000 < data_file.stat().st_size
    assert "its weights are external, in big.onnx.data" in caplog.text and "the two files travel together" in caplog.text

    # the metadata is read from the graph alone, and names the data file with its size and hash
    doc = read_onnx_metadata(graph_file)
    assert read_metadata(graph_file) == doc and doc["verification"]["passed"]
    assert doc["external_data"] == {"file": "big.onnx.data", "bytes": data_file.stat().st_size, "sha256": _sha(data_file)}
    assert res.to_dict()["external_data"] is None  # the FP16 file (the final artifact) is self-contained
    proto = onnx.load(str(graph_file), load_external_data=False)
    external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and {e.value for t in external for e in t.external_data if e.key == "location"} == {"big.onnx.data"}

    # ONNX Runtime loads it by path, also after the pair moved elsewhere together
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(graph_file, moved / "big.onnx")
    shutil.copy(data_file, moved / "big.onnx.data")
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        want = wide_head.module(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(moved / "big.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    onnx.checker.check_model(str(moved / "big.onnx"))

    # FP16 is half the size: one self-contained file again, derived from the graph file's hash
    fp16 = read_onnx_metadata(tmp_path / "big.fp16.onnx")
    assert "external_data" not in fp16 and res.fp16_path == tmp_path / "big.fp16.onnx"
    assert fp16["parent_sha256"] == _sha(graph_file) and fp16["verification"]["passed"]
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in onnx.load(str(tmp_path / "big.fp16.onnx")).graph.initializer)

    # clsx info describes the pair
    out = CliRunner().invoke(app, ["info", str(graph_file)])
    assert out.exit_code == 0 and "external weights: big.onnx.data" in out.output and "present" in out.output
    data_file.unlink()
    out = CliRunner().invoke(app, ["info", str(graph_file)])
    assert out.exit_code == 0 and "MISSING" in out.output


def test_fp16_of_a_large_graph_can_stay_external_and_converts_from_a_file(tmp_path, wide_head, monkeypatch):
    monkeypatch.setattr(artifacts, "SINGLE_FILE_LIMIT", LIMIT)
    export_onnx(wide_head, tmp_path / "big.onnx", verify_photos=2)
    res = convert_fp16(tmp_path / "big.onnx", verify_photos=2)  # the FP32 weights come from big.onnx.data
    assert res.verification["passed"]
    assert _files(tmp_path) == ["big.fp16.onnx", "big.fp16.onnx.data", "big.fp16.onnx.json",
                                "big.onnx", "big.onnx.data", "big.onnx.json"]
    assert read_onnx_metadata(res.path)["external_data"]["file"] == "big.fp16.onnx.data"
    assert res.to_dict()["external_data"]["file"] == "big.fp16.onnx.data"
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 1000)


def test_large_graph_refuses_to_clobber_either_file(tmp_path, wide_head, monkeypatch):
    monkeypatch.setattr(artifacts, "SINGLE_FILE_LIMIT", LIMIT)
    (tmp_path / "big.onnx.data").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"big\.onnx\.data already exists"):
        export_onnx(wide_head, tmp_path / "big.onnx", verify=False)
    assert _files(tmp_path) == ["big.onnx.data"]
    res = export_onnx(wide_head, tmp_path / "big.onnx", verify=False, force=True)
    assert (tmp_path / "big.onnx.data").read_bytes() != b"precious" and res.metadata["external_data"]["bytes"] > 500_000
    # a smaller export over it with --force leaves no stale data file behind
    monkeypatch.setattr(artifacts, "SINGLE_FILE_LIMIT", 2**31 - 1)
    export_onnx(wide_head, tmp_path / "big.onnx", verify=False, force=True)
    assert _files(tmp_path) == ["big.onnx", "big.onnx.json"]


def test_large_graph_leaves_nothing_behind_on_failure(tmp_path, wide_head, monkeypatch):
    monkeypatch.setattr(artifacts, "SINGLE_FILE_LIMIT", LIMIT)

    def no_sidecar(doc):  # the sidecar is the last member of the file set to be written
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "dumps", no_sidecar)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(wide_head, tmp_path / "big.onnx", verify=False)
    assert _files(tmp_path) == []  # no graph, no data file, no staging folder


def test_large_graph_that_fails_verification_is_kept_whole(tmp_path, wide_head, monkeypatch):
    monkeypatch.setattr(artifacts, "SINGLE_FILE_LIMIT", LIMIT)
    real = onnx_export.finalize_io

    def broken(model, spec, plan):
        real(model, spec, plan)
        relu = next(n for n in model.graph.node if n.op_type == "Relu")
        relu.op_type = "Sigmoid"

    monkeypatch.setattr(onnx_export, "finalize_io", broken)
    with pytest.raises(GateFailedError, match=r"big\.FAILED\.onnx \(\+ its \.data file\)"):
        export_onnx(wide_head, tmp_path / "big.onnx", verify_photos=2)
    assert _files(tmp_path) == ["big.FAILED.onnx", "big.FAILED.onnx.data", "big.FAILED.onnx.json"]
    sess = ort.InferenceSession(str(tmp_path / "big.FAILED.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 1000)
