"""Graphs clsx did not make are hostile input like any other: their external data must stay inside
their folder in every command that now reads them without clsx metadata (info, infer, build,
annotate, calib, triton-repo), refused in one line before anything reads outside."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_graphs import tiny_graph  # noqa: E402

from clsx.cli import app  # noqa: E402

runner = CliRunner()


@pytest.fixture
def escaping(tmp_path) -> Path:
    """A foreign graph whose weights file is named ``../outside.bin`` (and exists there)."""
    import onnx

    inner = tmp_path / "model"
    inner.mkdir()
    path = tiny_graph(inner / "g.onnx", ("n", 3, 16, 16), external=True)
    (tmp_path / "outside.bin").write_bytes((inner / "g.onnx.bin").read_bytes())
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../outside.bin"
    onnx.save(model, str(path))
    return path


def _run_on(graph: Path, command: list[str], photo, tmp_path: Path):
    """``clsx COMMAND GRAPH ARGS`` in-process, ``{images}`` a folder with one real photo, ``{repo}`` and
    ``{graph}`` filled in. (``build --target rtx`` runs TensorRT-RTX, which the README's install line
    installs: a missing one fails these tests rather than skipping them.)"""
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "a.png").write_bytes(photo["coffee"].read_bytes())
    args = [a.format(images=images, repo=tmp_path / "repo", graph=graph) for a in command]
    return runner.invoke(app, [args[0], str(graph), *args[1:]])


@pytest.mark.parametrize("command", [
    ["info"], ["infer", "{images}", "--preset", "tv:resnet18"], ["build", "--target", "rtx"],
    ["annotate", "--preset", "tv:resnet18"], ["calib", "{images}", "--preset", "tv:resnet18"],
    ["triton-repo", "-o", "{repo}"],
])
def test_external_data_outside_the_folder_is_refused_everywhere(escaping, photo, tmp_path, command):
    res = _run_on(escaping, command, photo, tmp_path)
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("clsx: error: ") and "'../outside.bin' is outside the artifact's folder" in lines[-1]
    assert res.stdout == "" and not (tmp_path / "repo").exists()
    assert sorted(p.name for p in escaping.parent.iterdir()) == ["g.onnx", "g.onnx.bin"]  # nothing written


@pytest.fixture
def unknown_op(tmp_path) -> Path:
    """A foreign graph whose last node is an operator of a domain nobody registered."""
    import onnx
    from onnx import helper

    (tmp_path / "model").mkdir()
    path = tiny_graph(tmp_path / "model" / "g.onnx", ("n", 3, 16, 16))
    model = onnx.load(str(path))
    out = model.graph.output[0]
    model.graph.node.append(helper.make_node("Frobnicate", [out.name], ["frobbed"], domain="evil.ops"))
    out.name = "frobbed"
    model.opset_import.append(helper.make_opsetid("evil.ops", 1))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("command", [
    ["infer", "{images}", "--preset", "tv:resnet18"], ["calib", "{images}", "--preset", "tv:resnet18"],
    ["parity", "{graph}", "-i", "{images}", "--preset", "tv:resnet18"], ["build", "--target", "rtx"],
])
def test_an_operator_nobody_registered_is_one_line(unknown_op, photo, tmp_path, command):
    res = _run_on(unknown_op, command, photo, tmp_path)
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("clsx: error: ") and "Frobnicate" in last, res.stderr
    assert sorted(p.name for p in unknown_op.parent.iterdir()) == ["g.onnx"]  # nothing written
