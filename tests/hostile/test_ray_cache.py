"""Ray workers use no file they have not hashed to the driver's sha256, from a cache only this user can write.

``ship_model`` / ``ShippedModel.materialize`` are the real functions; the object store is a dict
(``_FakeRay``: ``put`` keeps the value, ``get`` hands it back), since what is tested is what a worker
does with the files, not Ray. ``tempfile.tempdir`` points at this test's folder, so the node's temp
folder (where the cache lives) is one the test can plant files in, as another user could in /tmp.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import tempfile
from pathlib import Path

import pytest
from escape_graphs import tiny_graph

from clsx.scale import ray_infer
from clsx.scale.ray_infer import RayInferError, ShippedModel, ship_model

PLANTED = b"planted by someone else: not the model"


class _FakeRay:
    def __init__(self) -> None:
        self.store: dict[int, object] = {}

    def put(self, value):
        ref = len(self.store)
        self.store[ref] = value
        return ref

    def get(self, ref):
        return self.store[ref]


@pytest.fixture
def node(tmp_path, monkeypatch):
    """(fake ray, this node's temp folder): a worker on another machine (the driver's path is not there)."""
    tmp = tmp_path / "node-tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    ray = _FakeRay()
    real_require = ray_infer.require
    monkeypatch.setattr(ray_infer, "require", lambda name, **kw: ray if name == "ray" else real_require(name, **kw))
    monkeypatch.setattr(ray_infer, "_fallback_root", [])
    return ray, tmp


def _shipped(ray, tmp_path) -> tuple[ShippedModel, Path]:
    graph = tiny_graph(tmp_path / "driver")
    shipped = ship_model(ray, str(graph))
    return dataclasses.replace(shipped, origin=str(tmp_path / "not-on-this-node" / "m.onnx")), graph


def _same_as_driver(opened: Path, graph: Path) -> None:
    assert opened.read_bytes() == graph.read_bytes()
    data = opened.parent / "m.onnx.data"
    assert not data.is_symlink() and data.read_bytes() == (graph.parent / "m.onnx.data").read_bytes()


def _user_root(tmp: Path) -> Path:
    return tmp / f"clsx-ray-artifacts-{os.getuid()}"


def test_ship_model_sends_every_files_digest(node, tmp_path):
    ray, _ = node
    shipped, graph = _shipped(ray, tmp_path)
    files = {"m.onnx": graph, "m.onnx.data": graph.parent / "m.onnx.data"}
    assert dict(shipped.sha256) == {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in files.items()}
    assert shipped.sha256[0][0] == "m.onnx"


def test_a_file_planted_in_the_old_shared_cache_is_not_used(node, tmp_path):
    """The issue: ``<tmp>/clsx-ray-artifacts/<digest>/m.onnx`` (predictable, shared by all users) was
    opened as the model without a look at its contents."""
    ray, tmp = node
    shipped, graph = _shipped(ray, tmp_path)
    for digest in (shipped.digest, shipped.digest[:24]):
        planted = tmp / "clsx-ray-artifacts" / digest
        planted.mkdir(parents=True, exist_ok=True)
        (planted / "m.onnx").write_bytes(PLANTED)
        (planted / "m.onnx.data").write_bytes(PLANTED)
    opened = Path(shipped.materialize())
    assert opened.parent.parent == _user_root(tmp)
    _same_as_driver(opened, graph)
    assert stat.S_IMODE(os.lstat(_user_root(tmp)).st_mode) == 0o700


def test_a_bad_file_in_the_users_cache_is_replaced_not_used(node, tmp_path):
    """Stale, truncated or swapped files in the private cache (a crash mid-write, a link put there):
    each is hashed, and whatever does not match is rewritten from the object store."""
    ray, tmp = node
    shipped, graph = _shipped(ray, tmp_path)
    folder = _user_root(tmp) / shipped.digest
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(_user_root(tmp), 0o700)
    (folder / "m.onnx").write_bytes(PLANTED)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes((graph.parent / "m.onnx.data").read_bytes())  # even the right bytes, through a link out
    (folder / "m.onnx.data").symlink_to(outside)
    opened = Path(shipped.materialize())
    assert opened == folder / "m.onnx"
    _same_as_driver(opened, graph)
    assert outside.read_bytes() == (graph.parent / "m.onnx.data").read_bytes()  # the link was replaced, not written through


@pytest.mark.parametrize("how", ["open-to-others", "a-link", "a-file", "foreign-owner"])
def test_a_cache_folder_others_control_is_not_used(node, tmp_path, how):
    ray, tmp = node
    shipped, graph = _shipped(ray, tmp_path)
    root = _user_root(tmp)
    attacker = tmp_path / "attacker"
    (attacker / shipped.digest).mkdir(parents=True)
    (attacker / shipped.digest / "m.onnx").write_bytes(PLANTED)
    if how == "open-to-others":
        (root / shipped.digest).mkdir(parents=True)
        (root / shipped.digest / "m.onnx").write_bytes(PLANTED)
        os.chmod(root, 0o777)
    elif how == "a-link":
        root.symlink_to(attacker)
    elif how == "a-file":
        root.write_bytes(PLANTED)
    else:
        if os.getuid() != 0:
            pytest.skip("making a folder another user owns needs root")
        root.mkdir(mode=0o700)
        (root / shipped.digest).mkdir(mode=0o700)
        (root / shipped.digest / "m.onnx").write_bytes(PLANTED)
        os.chown(root, 4242, 4242)
    opened = Path(shipped.materialize())
    assert not str(opened).startswith(str(root) + os.sep) and not str(opened).startswith(str(attacker))
    _same_as_driver(opened, graph)
    private = opened.parent.parent
    assert private.parent == tmp and stat.S_IMODE(os.lstat(private).st_mode) == 0o700 and os.lstat(private).st_uid == os.getuid()
    assert (attacker / shipped.digest / "m.onnx").read_bytes() == PLANTED  # nothing written into the attacker's folder


def test_the_drivers_path_is_used_only_when_its_bytes_match(node, tmp_path):
    """A node that sees the driver's path (a shared mount) opens it in place, but only after hashing
    it: a file there with the same size and mtime and other bytes (utime is settable) is not used."""
    ray, tmp = node
    graph = tiny_graph(tmp_path / "driver")
    shipped = ship_model(ray, str(graph))
    assert shipped.materialize() == str(graph.resolve())
    st = os.stat(graph)
    good = graph.read_bytes()
    graph.write_bytes(bytes(reversed(good)))  # same size, other bytes
    os.utime(graph, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(graph).st_size, os.stat(graph).st_mtime_ns) == shipped.stamp
    opened = Path(shipped.materialize())
    assert opened != graph.resolve() and opened.read_bytes() == good


def test_an_object_store_copy_that_does_not_match_fails_in_one_line(node, tmp_path):
    ray, _ = node
    shipped, _ = _shipped(ray, tmp_path)
    ray.store[shipped.files[0]] = {**ray.store[shipped.files[0]], "m.onnx.data": PLANTED}
    with pytest.raises(RayInferError, match=r"^m\.onnx: the object store's copy of m\.onnx\.data does not match the driver's sha256$"):
        shipped.materialize()


def test_the_model_opens_from_the_cache(node, tmp_path):
    """End to end on this node: the cached copy is what ONNX Runtime runs, with the same logits."""
    import numpy as np

    import clsx

    ray, _ = node
    shipped, graph = _shipped(ray, tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with clsx.open(shipped.materialize(), device="cpu") as cached, clsx.open(graph, device="cpu") as original:
        np.testing.assert_array_equal(cached.run(x), original.run(x))
