"""Hostile names beyond "a link out of the folder": what else an artifact can name, and the one line
each gets (never a hang, a traceback, or a read of something it should not read)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from escape_graphs import SECRET, error_line, run_clsx, secret_file, set_location, tiny_graph, write_image

from clsx.core.artifact import ORT_MEMORY_ADDRESS_TAG, ArtifactError, checked_onnx
from clsx.core.metadata import embed_in_onnx, read_metadata


def _set_entry(graph: Path, key: str, value: str) -> None:
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == key:
                e.value = value
    graph.write_bytes(model.SerializeToString())


def test_location_naming_a_folder(tmp_path):
    graph = tiny_graph(tmp_path / "art")
    (graph.parent / "weights").mkdir()
    set_location(graph, "weights")
    line = error_line(run_clsx("triton-repo", graph, "-o", tmp_path / "repo"))
    assert line == f"clsx: error: {graph}: external data file 'weights' is a folder, not a regular file; refused"
    assert not (tmp_path / "repo" / "m").exists()


def test_location_naming_a_fifo_is_refused_without_opening_it(tmp_path):
    """A FIFO would block every reader forever (onnx.load, ONNX Runtime, a copy): the check only lstat's it."""
    graph = tiny_graph(tmp_path / "art")
    os.mkfifo(graph.parent / "pipe")
    set_location(graph, "pipe")
    image = write_image(tmp_path / "images" / "a.jpg")
    for args in (("infer", graph, image, "--random-weights"), ("triton-repo", graph, "-o", tmp_path / "repo")):
        line = error_line(run_clsx(*args, timeout=60))  # a hang is a TimeoutExpired: the test fails
        assert line == f"clsx: error: {graph}: external data file 'pipe' is a FIFO, not a regular file; refused"


def test_the_graph_itself_a_fifo(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    for cmd in ("info", "build"):
        line = error_line(run_clsx(cmd, fifo, timeout=60))
        assert line.endswith("is a FIFO, not a regular file"), line


def test_location_with_nul_and_very_long_names(tmp_path):
    graph = tiny_graph(tmp_path / "art")
    set_location(graph, "m.onnx.data\0/../../etc/passwd")
    with pytest.raises(ArtifactError, match=r"is not a usable file name; refused$"):
        checked_onnx(graph)
    long = "x" * 5000
    set_location(graph, long)
    line = error_line(run_clsx("triton-repo", graph, "-o", tmp_path / "repo"))
    assert "File name too long; refused" in line and len(line) < 500, line  # the name is shortened in the message


def test_ort_memory_address_location(tmp_path):
    """ONNX Runtime reads data at ``*/_ORT_MEM_ADDR_/*`` from the raw address in ``offset``: refused
    even when files of that name exist in the folder."""
    graph = tiny_graph(tmp_path / "art")
    (graph.parent / "*" / "_ORT_MEM_ADDR_").mkdir(parents=True)
    (graph.parent / "*" / "_ORT_MEM_ADDR_" / "*").write_bytes(b"\0" * 100_000)
    set_location(graph, ORT_MEMORY_ADDRESS_TAG)
    _set_entry(graph, "offset", "4096")
    line = error_line(run_clsx("infer", graph, write_image(tmp_path / "images" / "a.jpg"), "--random-weights"))
    assert "asks for its data at a raw memory address ('*/_ORT_MEM_ADDR_/*'), not in a file; refused" in line


def test_symlink_loop(tmp_path):
    graph = tiny_graph(tmp_path / "art")
    data = graph.parent / "m.onnx.data"
    data.unlink()
    data.symlink_to("loop1")
    (graph.parent / "loop1").symlink_to("loop2")
    (graph.parent / "loop2").symlink_to("loop1")
    line = error_line(run_clsx("triton-repo", graph, "-o", tmp_path / "repo"))
    assert line == f"clsx: error: {graph}: external data file 'm.onnx.data': Too many levels of symbolic links; refused"


def test_link_target_that_climbs_out_through_a_subfolder(tmp_path):
    secret = secret_file(tmp_path / "outside")
    graph = tiny_graph(tmp_path / "art")
    (graph.parent / "sub").mkdir()
    data = graph.parent / "m.onnx.data"
    data.unlink()
    data.symlink_to("sub/../../outside/" + secret.name)
    with pytest.raises(ArtifactError, match="is outside the artifact's folder"):
        checked_onnx(graph)


def test_truncated_and_bad_offsets(tmp_path):
    graph = tiny_graph(tmp_path / "art")
    data = graph.parent / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=r"'m\.onnx\.data', which is missing or truncated in"):
        checked_onnx(graph)
    graph = tiny_graph(tmp_path / "art2")
    _set_entry(graph, "offset", "-8")
    with pytest.raises(ArtifactError, match="negative external data offset"):
        checked_onnx(graph)
    _set_entry(graph, "offset", "0x10")
    with pytest.raises(ArtifactError, match="non-numeric external data offset"):
        checked_onnx(graph)


def test_metadata_naming_a_file_outside(tmp_path):
    """``external_data.file`` in the document: `clsx info` looked it up beside the graph
    (``with_name``), crashing on ``../`` (a traceback) and stat'ing whatever a link named."""
    import onnx

    secret_file(tmp_path / "outside")
    graph = tiny_graph(tmp_path / "art")
    model = onnx.load(str(graph), load_external_data=False)
    doc = read_metadata(graph)
    for name in ("../outside/secret.bin", str(tmp_path / "outside" / "secret.bin"), "link.data"):
        doc["external_data"] = {"file": name, "bytes": 1, "sha256": "0" * 64}
        embed_in_onnx(model, doc)
        graph.write_bytes(model.SerializeToString())
        if name == "link.data":
            (graph.parent / "link.data").symlink_to(tmp_path / "outside" / "secret.bin")
        line = error_line(run_clsx("info", graph))
        assert line == (f"clsx: error: {graph}: file named by metadata external_data.file {name!r} is outside the "
                        f"artifact's folder {graph.parent}; refused (an artifact may name only files inside its own folder)")


def test_sidecar_that_links_out_of_the_folder(tmp_path):
    """A plan (or any artifact whose metadata is in its sidecar) whose ``.json`` is a link to a JSON
    file elsewhere: refused by info, triton-repo and the runtimes alike; the outside JSON is not shown."""
    outside = tmp_path / "outside"
    outside.mkdir()
    graph = tiny_graph(tmp_path / "src")
    doc = read_metadata(graph)
    doc.update(artifact="tensorrt", tensorrt={"flavour": "tensorrt", "profile": {"min": [1], "max": [8]}})
    doc["model"]["name"] = "FROM-OUTSIDE"
    (outside / "doc.json").write_text(json.dumps(doc))
    art = tmp_path / "art"
    art.mkdir()
    plan = art / "m.plan"
    plan.write_bytes(b"not really a plan")
    (art / "m.plan.json").symlink_to(outside / "doc.json")
    want = (f"clsx: error: {plan}: sidecar 'm.plan.json' is outside the artifact's folder {art}; refused "
            "(an artifact may name only files inside its own folder)")
    for args in (("info", plan), ("triton-repo", plan, "-o", tmp_path / "repo")):
        res = run_clsx(*args)
        assert error_line(res) == want
        assert "FROM-OUTSIDE" not in res.stdout + res.stderr
    os.unlink(outside / "doc.json")  # a dangling link out: the same line
    assert error_line(run_clsx("info", plan)) == want
    (art / "m.plan.json").unlink()
    os.mkfifo(art / "m.plan.json")  # a FIFO sidecar: refused, not read (reading would block)
    assert error_line(run_clsx("info", plan, timeout=60)).endswith("sidecar 'm.plan.json' is a FIFO, not a regular file; refused")


def test_shared_reader_still_reads_plain_artifacts(tmp_path):
    """Nothing hostile: read_metadata and checked_onnx agree with the files on disk."""
    graph = tiny_graph(tmp_path / "art")
    assert checked_onnx(graph) == [graph.parent / "m.onnx.data"]
    assert read_metadata(graph)["model"]["num_classes"] == 10
    assert SECRET not in graph.read_bytes()


# ---------------------------------------------------------------------------------------------
# Documents clsx reads as text (sidecars, label files, calibration caches): regular files of a
# bounded size only, through core.artifact.read_text_file


def test_label_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    graph = tiny_graph(tmp_path / "art")
    fifo = tmp_path / "labels.txt"
    os.mkfifo(fifo)
    image = write_image(tmp_path / "images" / "a.jpg")
    line = error_line(run_clsx("infer", graph, image, "--labels", fifo, "--random-weights", timeout=60))
    assert line == f"clsx: error: labels file {fifo}: a FIFO, not a regular file; refused"


def test_calibration_cache_that_is_a_fifo_or_a_folder(tmp_path):
    graph = tiny_graph(tmp_path / "art")
    image = write_image(tmp_path / "images" / "a.jpg")
    fifo = tmp_path / "ranges.json"
    os.mkfifo(fifo)
    for cache, kind in ((fifo, "a FIFO"), (tmp_path, "a folder")):
        res = run_clsx("calib", graph, image.parent, "-o", tmp_path / "q.onnx", "--cache", cache, timeout=120)
        assert res.returncode == 1, res.stderr  # (after the warnings about a one-image folder)
        assert res.stderr.splitlines()[-1] == f"clsx: error: calibration cache {cache}: {kind}, not a regular file; refused"
        assert not (tmp_path / "q.onnx").exists()


def test_oversized_sidecar_is_refused_before_it_is_read(tmp_path):
    """A 65 MiB sidecar (sparse: no disk used) is refused from its size, not parsed into memory."""
    from clsx.core.artifact import MAX_DOCUMENT_BYTES

    plan = tmp_path / "m.plan"  # a plan's document is its sidecar
    plan.write_bytes(b"not really an engine")
    side = Path(f"{plan}.json")
    with open(side, "wb") as f:
        f.truncate(MAX_DOCUMENT_BYTES + 1)
    with pytest.raises(ArtifactError, match=rf"^sidecar {side}: {MAX_DOCUMENT_BYTES + 1} bytes, more than the 64 MiB"):
        read_metadata(plan)
