"""An ONNX graph whose external data leaves its folder is refused by every reader, before any read.

The graph is real (tests/hostile/escape_graphs.py), the commands are the real CLI; the bytes outside
(``SECRET``) must never reach a Triton repository, a plan, a Ray object, ONNX Runtime or onnx.load,
and the refusal is one line that does not depend on whether anything exists outside.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from escape_graphs import SECRET, error_line, link_data_out, run_clsx, secret_file, set_location, tiny_graph
from typer.testing import CliRunner

import clsx
from clsx.cli import app
from clsx.core.artifact import ArtifactError, artifact_files, checked_onnx, open_artifact

runner = CliRunner()
ESCAPES = ["link-absolute", "link-relative", "link-chain", "location-absolute", "location-dotdot", "constant-link"]


def make_escape(tmp_path: Path, how: str) -> tuple[Path, str]:
    """(graph, the location its data is named by) for one way out of the folder."""
    secret = secret_file(tmp_path / "outside")
    art = tmp_path / "art"
    graph = tiny_graph(art, constant_external=how == "constant-link")
    data = art / "m.onnx.data"
    if how in ("link-absolute", "constant-link"):
        link_data_out(graph, secret)
    elif how == "link-relative":
        data.unlink()
        data.symlink_to("../outside/secret.bin")
    elif how == "link-chain":  # inside -> inside -> outside
        data.unlink()
        data.symlink_to("hop")
        (art / "hop").symlink_to("sub/../hop2")
        (art / "sub").mkdir()
        (art / "hop2").symlink_to(secret)
    elif how == "location-absolute":
        set_location(graph, str(secret))
        return graph, str(secret)
    elif how == "location-dotdot":
        set_location(graph, "../outside/secret.bin")
        return graph, "../outside/secret.bin"
    return graph, "m.onnx.data"


def refusal(graph: Path, location: str) -> str:
    return (f"{graph}: external data file {location!r} is outside the artifact's folder {graph.parent}; refused "
            "(an artifact may name only files inside its own folder)")


def _no_secret_under(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            assert SECRET[:64] not in p.read_bytes(), f"{p} holds the outside file's bytes"


def _one_line(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 1, res.output
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def image(tmp_path_factory, photos) -> Path:
    folder = tmp_path_factory.mktemp("escape-images")
    for p in photos[:4]:
        shutil.copy(p, folder / p.name)
    return folder


@pytest.mark.parametrize("how", ESCAPES)
def test_triton_repo_copies_nothing_from_outside(tmp_path, how):
    graph, location = make_escape(tmp_path, how)
    repo = tmp_path / "repo"
    res = runner.invoke(app, ["triton-repo", str(graph), "-o", str(repo)])
    assert _one_line(res) == "clsx: error: " + refusal(graph, location)
    assert not (repo / "m").exists()
    if repo.exists():
        _no_secret_under(repo)


@pytest.mark.parametrize("how", ESCAPES)
def test_build_refuses_before_tensorrt_parses(tmp_path, how):
    graph, location = make_escape(tmp_path, how)  # (refused before TensorRT is even imported: no skip without it)
    res = runner.invoke(app, ["build", str(graph), "--target", "rtx", "--opt-batch", "2", "--max-batch", "4"])
    assert _one_line(res) == "clsx: error: " + refusal(graph, location)
    assert not graph.with_suffix(".plan").exists() and not graph.with_suffix(".plan.json").exists()


@pytest.mark.parametrize("how", ESCAPES)
def test_calib_refuses_before_reading_the_graph(tmp_path, how, image):
    graph, location = make_escape(tmp_path, how)
    res = runner.invoke(app, ["calib", str(graph), str(image), "--num", "2", "--batch", "1"])
    assert _one_line(res) == "clsx: error: " + refusal(graph, location)
    assert not (graph.parent / "m.int8.onnx").exists()


@pytest.mark.parametrize("how", ESCAPES)
def test_infer_refuses_before_onnx_runtime(tmp_path, how, image):
    graph, location = make_escape(tmp_path, how)
    res = runner.invoke(app, ["infer", str(graph), str(image), "--random-weights"])  # the tiny graph is untrained
    assert _one_line(res) == "clsx: error: " + refusal(graph, location)
    assert res.stdout == ""  # not even the header: it goes out with the first batch, once the model has loaded


class _RecordingRay:
    """Stands for the ``ray`` module in ship_model: records what would enter the object store."""

    def __init__(self) -> None:
        self.put_calls: list[object] = []

    def put(self, value):
        self.put_calls.append(value)
        return object()


@pytest.mark.parametrize("how", ESCAPES)
def test_ray_ships_nothing_from_outside(tmp_path, how):
    from clsx.scale.ray_infer import ship_model

    graph, location = make_escape(tmp_path, how)
    ray = _RecordingRay()
    with pytest.raises(ArtifactError) as err:
        ship_model(ray, str(graph))
    assert str(err.value) == refusal(graph, location)
    assert ray.put_calls == []


@pytest.mark.parametrize("how", ESCAPES)
def test_runtime_and_fp16_refuse_before_any_library_reads(tmp_path, how, monkeypatch):
    """clsx.open(...).activate(), convert_fp16 and checked_onnx: refused before ONNX Runtime or
    onnx's external-data loader is called at all."""
    import onnx.external_data_helper as edh
    import onnxruntime

    from clsx.exporter.fp16 import convert_fp16

    graph, location = make_escape(tmp_path, how)
    calls: list[str] = []

    def forbidden(name):
        def fn(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} was called on a graph whose data leaves its folder")
        return fn

    monkeypatch.setattr(onnxruntime, "InferenceSession", forbidden("InferenceSession"))
    monkeypatch.setattr(edh, "load_external_data_for_model", forbidden("load_external_data_for_model"))
    monkeypatch.setattr(edh, "load_external_data_for_tensor", forbidden("load_external_data_for_tensor"))
    with pytest.raises(ArtifactError) as err:
        clsx.open(graph, device="cpu").activate()
    assert str(err.value) == refusal(graph, location)
    with pytest.raises(ArtifactError) as err:
        convert_fp16(graph, verify=False)
    assert str(err.value) == refusal(graph, location)
    assert not (graph.parent / "m.fp16.onnx").exists()
    for fn in (checked_onnx, artifact_files, open_artifact):
        with pytest.raises(ArtifactError):
            fn(graph)
    assert calls == []


@pytest.mark.parametrize("command", ["infer", "build", "triton-repo"])
def test_the_refusal_does_not_say_whether_the_outside_path_exists(tmp_path, command, image):
    """The same stderr, byte for byte, for a link to an existing file, to nothing, to a FIFO and to a
    folder outside; and it names neither the link's target nor anything about it."""
    outside = tmp_path / "outside"
    graph = tiny_graph(tmp_path / "art")
    args = {"infer": [graph, image, "--random-weights"], "build": [graph, "--target", "rtx"],
            "triton-repo": [graph, "-o", tmp_path / "repo"]}[command]
    seen = {}
    for state in ("file", "missing", "fifo", "folder"):
        if outside.exists():
            shutil.rmtree(outside)
        outside.mkdir()
        target = outside / "target"
        if state == "file":
            target.write_bytes(SECRET)
        elif state == "fifo":
            os.mkfifo(target)  # opening it would block the reader: the test's timeout would fire
        elif state == "folder":
            target.mkdir()
        link_data_out(graph, target)
        res = run_clsx(command, *args, timeout=90)
        seen[state] = error_line(res)
    assert len(set(seen.values())) == 1, seen
    line = seen["file"]
    assert line == "clsx: error: " + refusal(graph, "m.onnx.data")
    assert "outside/target" not in line and "missing" not in line and "truncated" not in line


def test_links_that_stay_inside_are_fine(tmp_path, image):
    """A data file that is a link to a file inside the folder (relative, absolute, through a
    sub-folder link) is the artifact's own: it is copied, shipped and run like a plain file."""
    from clsx.scale.ray_infer import ship_model

    art = tmp_path / "art"
    graph = tiny_graph(art)
    data = art / "m.onnx.data"
    real = data.read_bytes()
    (art / "weights").mkdir()
    (art / "weights" / "real.bin").write_bytes(real)
    (art / "w").symlink_to("weights")
    for link in ("weights/real.bin", str(art / "weights" / "real.bin"), "w/real.bin", "./w/../weights/real.bin"):
        data.unlink()
        data.symlink_to(link)
        assert checked_onnx(graph) == [data]
        repo = tmp_path / "repo"
        res = runner.invoke(app, ["triton-repo", str(graph), "-o", str(repo), "--force"])
        assert res.exit_code == 0, res.output
        copied = repo / "m" / "1" / "m.onnx.data"
        assert copied.read_bytes() == real and not copied.is_symlink()
        ray = _RecordingRay()
        shipped = ship_model(ray, str(graph))
        assert ray.put_calls[0]["m.onnx.data"] == real
        assert dict(shipped.sha256)["m.onnx.data"] == __import__("hashlib").sha256(real).hexdigest()
    res = runner.invoke(app, ["infer", str(graph), str(image), "--topk", "1"])
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 1 + len(list(image.iterdir()))  # header + one row per photo
    x = np.zeros((1, 3, 8, 8), dtype=np.float32)
    with clsx.open(graph, device="cpu") as rt:
        assert rt.run(x).shape == (1, 10)


def test_the_check_never_looks_outside(tmp_path, monkeypatch):
    """_resolve_inside reads links and lstat's components only inside the folder: a link out ends
    the walk before its target is touched (so timing or errors cannot tell whether it exists)."""
    from clsx.core import artifact

    secret = secret_file(tmp_path / "outside")
    graph = tiny_graph(tmp_path / "art")
    data = graph.parent / "m.onnx.data"
    data.unlink()
    (graph.parent / "hop").symlink_to(secret)
    data.symlink_to("hop")
    touched: list[str] = []
    real_lstat, real_stat, real_readlink = os.lstat, os.stat, os.readlink

    def record(fn):
        def wrapper(p, *a, **k):
            touched.append(os.fspath(p))
            return fn(p, *a, **k)
        return wrapper

    with monkeypatch.context() as m:  # os is one module: everything in this block is recorded
        m.setattr(os, "lstat", record(real_lstat))
        m.setattr(os, "stat", record(real_stat))
        m.setattr(os, "readlink", record(real_readlink))
        with pytest.raises(ArtifactError, match="is outside the artifact's folder"):
            artifact.inside(graph, "m.onnx.data", what="external data file")
    assert str(graph.parent / "hop") in touched  # the link inside was read ...
    outside = str(tmp_path / "outside")
    assert not [t for t in touched if t == outside or t.startswith(outside + "/")], touched  # ... its target never looked at
