"""clsx infer --ray: resources that cannot stall, real Ray Data runs equal to local clsx infer row for row."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import clsx

from clsx.cli import app
from clsx.core.errors import ClsxError, ImageError, MissingDependencyError
from clsx.tools.infer import run_infer
from clsx.core.metadata import read_metadata, spec_of
from clsx.scale import ray_infer
from clsx.scale.ray_infer import MIN_READER_CPUS, RayInferError, list_images, plan_resources, read_batch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")  # Ray Data's own deprecated settings
runner = CliRunner()


def _local_rows(model: Path, folder: Path | str, fmt: str = "csv") -> str:
    out = io.StringIO()
    run_infer(str(model), [folder], stdout=out, topk=3, batch_size=4, fmt=fmt)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Resources (no Ray needed)


@pytest.mark.parametrize("cpus", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("workers", [None, 1, 2, 4, 16])
def test_default_resources_always_leave_the_readers_cpus(cpus, workers):
    res = plan_resources(cpus, 0, num_workers=workers)
    actors = res.workers * res.cpus_per_worker
    readers = res.readers * res.reader_cpus
    assert res.workers == (workers or max(1, cpus // 2))
    assert actors <= cpus / 2 + 1e-9  # the actor pool never holds more than half the CPUs
    assert cpus - actors >= MIN_READER_CPUS and res.readers >= 1 and 0 < res.reader_cpus <= 1.0
    assert actors + readers <= cpus + 1e-6  # everything fits at once: nothing waits on anything else


def test_the_configuration_that_stalls_is_refused():
    # 2 actors x 1 CPU on 2 CPUs: the read tasks never get a CPU and Ray waits forever
    with pytest.raises(RayInferError, match="leave the image readers 0 of the cluster's 2 CPUs: the pipeline would stall"):
        plan_resources(2, 0, num_workers=2, cpus_per_worker=1.0)
    ok = plan_resources(2, 0, num_workers=2, cpus_per_worker=0.875)  # the tightest accepted: 0.25 CPU left
    assert ok.readers * ok.reader_cpus == pytest.approx(0.25)


def test_gpu_workers():
    res = plan_resources(16, 4, gpus_per_worker=1)
    assert (res.workers, res.gpus_per_worker, res.cpus_per_worker) == (4, 1, 1.0)
    assert plan_resources(16, 1, gpus_per_worker=0.25).workers == 4  # fractions share a GPU
    with pytest.raises(RayInferError, match="2 workers x 1 GPUs need 2 GPUs; the Ray cluster has 0"):
        plan_resources(2, 0, num_workers=2, gpus_per_worker=1)
    with pytest.raises(RayInferError, match="asks for 1 GPUs but the Ray cluster has 0"):
        plan_resources(2, 0, gpus_per_worker=1)
    # a cluster that autoscales may add GPU nodes: warn, do not refuse
    assert plan_resources(2, 0, num_workers=2, gpus_per_worker=1, elastic=True).workers == 2


# ---------------------------------------------------------------------------------------------
# Listing and reading (no Ray needed)


def test_local_listing_is_clsx_infers(images):
    listed = list_images([images])
    assert listed.filesystem is None and listed.names == listed.paths
    rows = _local_rows_paths(images)
    assert listed.names == rows


def _local_rows_paths(folder):
    from clsx.predict.listing import iter_image_paths

    return [os.fspath(p) for p in iter_image_paths(folder)]


def test_uri_listing_and_reading_match_local_files(images, tiny_onnx):
    pytest.importorskip("pyarrow.fs", reason="pyarrow comes with ray[data]")
    uri = images.as_uri()
    listed = list_images([uri])
    assert listed.filesystem is not None
    assert listed.names == [Path(p).as_uri() for p in _local_rows_paths(images)]  # same files, same order
    spec = spec_of(read_metadata(tiny_onnx)).preprocess
    batch = {"index": np.arange(len(listed.names)), "name": np.asarray(listed.names, dtype=object),
             "path": np.asarray(listed.paths, dtype=object)}
    remote = read_batch(batch, spec=spec, filesystem=listed.filesystem)
    local = read_batch({**batch, "name": np.asarray(listed.paths, dtype=object)}, spec=spec)
    np.testing.assert_array_equal(remote["tensor"], local["tensor"])  # the one preprocessing, bit for bit
    for name, path, r_err, l_err in zip(listed.names, listed.paths, remote["error"], local["error"]):
        assert r_err == l_err.replace(path, name)  # the same reason, naming the URI
    assert sum(bool(e) for e in remote["error"]) == 3
    with pytest.raises(ClsxError, match="no such file or directory"):
        list_images([(images / "missing").as_uri()])
    with pytest.raises(ClsxError, match="mix of local paths and URIs"):
        list_images([uri, images])


# ---------------------------------------------------------------------------------------------
# Bad input


def test_without_ray_the_flag_names_the_extra(tiny_onnx, images, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(images), "--ray"])
    assert res.exit_code == 1 and res.stdout == ""
    assert "pip install 'clsx[ray]'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    with pytest.raises(MissingDependencyError, match=r"clsx\[ray\]"):
        ray_infer.predict_with_ray(tiny_onnx, [images])


def test_unreachable_cluster_is_one_line(tiny_onnx, images):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'clsx[ray]')")
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(images), "--ray", "--address", "127.0.0.1:1"])
    assert res.exit_code == 1 and res.stdout == ""
    assert "clsx: error: cannot reach the Ray cluster at 127.0.0.1:1" in res.stderr


def test_ray_options_need_ray(tiny_onnx, images):
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(images), "--num-workers", "2"])
    text = " ".join(res.stderr.replace("│", " ").split())
    assert res.exit_code == 2 and "--num-workers and --gpus-per-worker apply to --ray runs only" in text


def test_worker_errors_surface_as_the_users_error():
    pytest.importorskip("ray", reason="ray is not installed (pip install 'clsx[ray]')")
    from ray.exceptions import RayTaskError

    cause = ImageError("model.plan: cannot load")
    wrapped = RayTaskError("MapWorker.__init__", "Traceback ...\nImageError: model.plan: cannot load", cause).as_instanceof_cause()
    outer = RuntimeError("execution failed")
    outer.__cause__ = wrapped
    found = ray_infer._user_error(outer)
    assert found is cause and str(found) == "model.plan: cannot load"
    assert ray_infer._user_error(RuntimeError("a bug")) is None


# ---------------------------------------------------------------------------------------------
# Real Ray Data runs, 2 workers on a 2-CPU local instance


def _two_cores() -> None:
    """Pin the child to 2 cores, so its local Ray has 2 CPUs whatever this machine has: the small case."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])


def test_cli_small_case_equals_local_and_does_not_stall(tiny_onnx, hostile_images):
    """The whole command in its own process (its own local Ray on this machine's cores), under a
    timeout: a stalled pipeline fails the test instead of hanging it."""
    pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'clsx[ray]')")
    cmd = [sys.executable, "-m", "clsx.cli", "infer", str(tiny_onnx), str(hostile_images), "--ray", "--num-workers", "2",
           "-k", "3", "-b", "4"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, preexec_fn=_two_cores)
    except subprocess.TimeoutExpired:
        pytest.fail("clsx infer --ray with 2 workers on this machine did not finish within 180 s: it stalled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = _local_rows(tiny_onnx, hostile_images)
    assert proc.stdout == local  # stdout carries the rows only, identical to local clsx infer
    rows = local.splitlines()
    assert len(rows) == 1 + 20 and sum(1 for r in rows[1:] if not r.endswith(",")) == 5  # 15 photos, 5 bad files
    assert "loop.jpg: cannot decode image" in local and "gone.jpg: no such file" in local
    assert "2 workers x (0.5 CPU)" in proc.stderr and "20 images, 5 failed" in proc.stderr
    # Ray's internals (its C++ core worker's "[... E ...] core_worker.cc" lines, token-auth notices,
    # Ray Data's warnings) stay off stderr without --verbose: every line there is clsx's own
    others = [line for line in proc.stderr.splitlines() if not line.startswith("clsx:")]
    assert not others, others


def test_python_api_over_a_uri_equals_local(local_ray, within, tiny_onnx, images):
    """JSONL rows for a file:// URI: read through pyarrow on the workers, the same rows as the local folder."""
    out = io.StringIO()
    summary = within(150, ray_infer.run_ray_infer, str(tiny_onnx), [images.as_uri()], stdout=out, topk=3,
                     batch_size=4, fmt="jsonl", num_workers=2, progress=False)
    local = _local_rows(tiny_onnx, images, fmt="jsonl")
    prefix = str(images)
    assert out.getvalue() == local.replace(prefix, images.as_uri())
    assert (summary.images, summary.failed) == (len(local.splitlines()), 3)
    assert "2 workers x (0.5 CPU)" in summary.runtime


def test_artifact_shipping_carries_external_data(local_ray, tmp_path, tiny_onnx, monkeypatch):
    import tempfile

    import onnx

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the per-node cache goes under this test's folder

    model = onnx.load(str(tiny_onnx))
    ext = tmp_path / "src" / "ext.onnx"
    ext.parent.mkdir()
    onnx.save_model(model, str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=512)
    assert (ext.parent / "ext.onnx.data").stat().st_size > 0
    shipped = ray_infer.ship_model(local_ray, ext)
    assert shipped.materialize() == str(ext.resolve())  # a node that sees the driver's file unchanged opens it
    elsewhere = dataclasses.replace(shipped, origin=str(tmp_path / "not-on-this-node" / "ext.onnx"))
    cached = Path(elsewhere.materialize())  # any other node: the files from the object store
    assert cached.name == "ext.onnx" and cached.parent.parent == tmp_path / f"clsx-ray-artifacts-{os.getuid()}"
    assert (cached.parent / "ext.onnx.data").read_bytes() == (ext.parent / "ext.onnx.data").read_bytes()
    assert elsewhere.materialize() == str(cached)  # cached by content: a second actor reuses it
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with clsx.open(cached) as shipped_rt, clsx.open(tiny_onnx) as original:
        np.testing.assert_array_equal(shipped_rt.run(x), original.run(x))
    assert ray_infer.ship_model(local_ray, "resnet18@torch").target == "resnet18"  # model names travel as names
    assert ray_infer.ship_model(local_ray, "resnet18").files is None
