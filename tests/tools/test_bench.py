"""clsx bench: interleaved rounds, percentiles, end-to-end through the infer pipeline, GPU sync, the CLI.

Speed itself is never asserted here (benchmarks/ measures it); these tests check what is timed,
in which order, and what is reported.
"""

import json

import pytest
from runtimes.tiny_models import tiny_model, tiny_onnx_once
from typer.testing import CliRunner

import clsx
from clsx.zoo import samples
from clsx.tools.bench import cuda_in_use, percentiles_ms, rotated, run_bench, split_iters, timed_call
from clsx.cli import app
from clsx.core.errors import ClsxError
from clsx.runtimes.base import Runtime

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return tiny_onnx_once(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def views(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("bench-views")
    samples.write_photo_variants(folder, photos[:5], per_photo=2, seed=7)
    return folder


class _Recording(Runtime):
    """A runtime that logs every call into a shared journal (to see the interleaving)."""

    backend = "torch"

    def __init__(self, inner, tag, journal):
        super().__init__(inner.target)
        self.inner, self.tag, self.journal = inner, tag, journal

    def load_spec(self):
        return self.inner.spec

    def activate_impl(self):
        self.inner.activate()

    def deactivate_impl(self):
        pass

    def io_impl(self):
        return self.inner.io_impl()

    def describe_impl(self):
        return f"recording {self.tag}"

    def run_impl(self, batch):
        self.journal.append((self.tag, len(batch)))
        return self.inner.run(batch)


def test_artifacts_are_interleaved_round_by_round(tiny_onnx):
    journal = []
    a, b = (_Recording(clsx.open(tiny_onnx), t, journal) for t in "AB")
    report = run_bench([a, b], batches=[2], warmup=1, iters=6, rounds=3, names=["A", "B"])
    timed = [tag for tag, n in journal[2:]]  # after one warm-up call each
    assert timed == ["A", "A", "B", "B", "B", "B", "A", "A", "A", "A", "B", "B"]  # order rotates every round
    ra, rb = report.get("A", "model", 2), report.get("B", "model", 2)
    assert ra.samples == rb.samples == 6 and ra.images == 12 and len(ra.round_throughputs) == 3
    assert ra.relative == 1.0 and rb.relative == pytest.approx(rb.throughput / ra.throughput)
    assert report.runtimes == {"A": "recording A", "B": "recording B"}


def test_model_only_figures_are_consistent(tiny, tiny_onnx):
    report = run_bench([tiny, tiny_onnx], batches=[1, 4], warmup=0, iters=5, rounds=2)
    assert [(r.target, r.batch) for r in report.results] == [
        ("tiny@torch", 1), (str(tiny_onnx), 1), ("tiny@torch", 4), (str(tiny_onnx), 4)]
    for r in report.results:
        assert r.mode == "model" and r.samples == 5 and r.images == 5 * r.batch
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms
        assert r.throughput == pytest.approx(r.images / r.seconds)
        assert r.mean_ms == pytest.approx(1e3 * r.seconds / r.samples)
        assert r.synchronized == cuda_in_use()  # torch picks CUDA where there is one (device auto)
    doc = report.to_dict()
    assert list(doc) == ["machine", "config", "runtimes", "results"]
    assert doc["machine"]["usable_cores"] >= 1 and doc["config"]["iters"] == 5


def test_seconds_budget_gives_at_least_one_call_per_round(tiny_onnx):
    report = run_bench([tiny_onnx], batches=[1], warmup=0, seconds=0.05, rounds=4)
    (r,) = report.results
    assert r.samples >= 4 and len(r.round_throughputs) == 4
    assert r.seconds >= 0.05 * 0.99


def test_end_to_end_runs_the_infer_pipeline(tiny_onnx, views, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted(views.iterdir()):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"garbage")  # timed like clsx infer would: a row with an error
    report = run_bench([tiny_onnx], batches=[2], e2e_batches=[4], warmup=1, iters=2, rounds=2, images=folder)
    e2e = report.get(str(tiny_onnx), "e2e", 4)
    assert e2e.images == 2 * 11 and e2e.samples == 2 * 3  # 2 passes over 11 images in batches of 4
    assert e2e.throughput == pytest.approx(e2e.images / e2e.seconds) and len(e2e.round_throughputs) == 2
    assert report.get(str(tiny_onnx), "model", 2).samples == 2
    assert report.config["images"] == 11 and report.config["e2e_passes"] == 2


def test_timed_call_synchronizes_before_and_after():
    events = []
    t = timed_call(lambda: events.append("call"), lambda: events.append("sync"))
    assert events == ["sync", "call", "sync"] and t >= 0
    assert timed_call(lambda: events.append("call"), None) >= 0 and events[-1] == "call"


def test_helpers():
    assert rotated([1, 2, 3], 1) == [2, 3, 1] and rotated([1, 2, 3], 3) == [1, 2, 3]
    assert split_iters(7, 3) == [3, 2, 2] and sum(split_iters(5, 5)) == 5
    p50, p90, p99, mean = percentiles_ms([0.001] * 9 + [0.011])
    assert p50 == pytest.approx(1.0) and p99 > p90 > p50 and mean == pytest.approx(2.0)


def test_bad_requests(tiny_onnx, tmp_path):
    with pytest.raises(ClsxError, match="not both"):
        run_bench([tiny_onnx], iters=2, seconds=1.0)
    with pytest.raises(ClsxError, match="at least 1"):
        run_bench([tiny_onnx], batches=[0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClsxError, match="no images found"):
        run_bench([tiny_onnx], images=tmp_path / "empty")
    with pytest.raises(ClsxError, match="at least one artifact"):
        run_bench([])


@pytest.mark.gpu
def test_gpu_timings_are_synchronized(tiny_onnx):
    model = tiny_model()
    report = run_bench([clsx.open(model, device="cuda"), tiny_onnx], batches=[8], warmup=2, iters=4, rounds=2)
    torch_row = report.results[0]
    assert torch_row.synchronized and "cuda" in report.runtimes[torch_row.target]
    assert torch_row.p50_ms > 0 and report.machine.get("gpu")


def test_cli_table_and_json(tiny_onnx, views, tmp_path):
    res = runner.invoke(app, ["bench", str(tiny_onnx), f"{tiny_onnx}@onnxrt", "--batch", "1,2", "--iters", "2", "--rounds", "1", "--warmup", "0"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == ["artifact", "mode", "batch", "samples", "p50_ms", "p90_ms", "p99_ms", "img_per_s", "vs_first"]
    assert len(lines) == 5 and lines[1].split()[-1] == "1.00x"
    assert "onnxruntime" in res.stderr

    res = runner.invoke(app, ["bench", str(tiny_onnx), "--batch", "2", "--iters", "1", "--rounds", "1", "-i", str(views),
                              "--e2e-batch", "5", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [(r["mode"], r["batch"]) for r in doc["results"]] == [("model", 2), ("e2e", 5)]
    assert set(doc["results"][0]) >= {"target", "mode", "batch", "samples", "images", "seconds", "p50_ms", "p90_ms",
                                      "p99_ms", "mean_ms", "throughput", "round_throughputs", "relative", "synchronized"}
    assert doc["results"][1]["images"] == 10

    res = runner.invoke(app, ["bench", str(tiny_onnx), "--iters", "2", "--seconds", "1"])
    assert res.exit_code == 2 and "not both" in res.stderr
    res = runner.invoke(app, ["bench", str(tiny_onnx), "--batch", "1,x"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["bench", str(tmp_path / "missing.onnx"), "--iters", "1"])
    assert res.exit_code == 1 and res.stderr.count("\n") == 1


def test_cli_random_weights_flag(tiny_onnx):
    args = ["bench", str(tiny_onnx), "--batch", "1", "--iters", "1", "--rounds", "1", "--warmup", "0"]
    loud = runner.invoke(app, args)
    assert loud.exit_code == 0, loud.output
    assert "clsx: warning: random weights: predictions are meaningless" in loud.stderr
    quiet = runner.invoke(app, [*args, "--random-weights"])
    assert quiet.exit_code == 0 and "random weights" not in quiet.stderr, quiet.output
