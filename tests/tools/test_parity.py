"""clsx parity: agreement figures, which tensors each artifact sees, per-image failures, bad input, the CLI.

Fast: a tiny 32x32 net (torch in memory and its ONNX export) on JPEG views of the real sample
photos. The real-weights fidelity gate lives in test_fidelity.py.
"""

import csv
import io
import json
import shutil

import numpy as np
import onnx
import pytest
from runtimes.tiny_models import LABELS, tiny_model, tiny_onnx_once
from typer.testing import CliRunner

import clsx
from clsx.zoo import samples
from clsx.cli import app
from clsx.core.errors import GateFailedError, OutputExistsError
from clsx.core.metadata import embed_in_onnx, read_onnx_metadata
from clsx.tools.parity import ParityError, Thresholds, preprocess_differences, run_guarded, run_parity
from clsx.core.preprocess import preprocess
from clsx.runtimes.base import Runtime
from clsx.core.spec import PreprocessSpec

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return tiny_onnx_once(tmp_path_factory)


@pytest.fixture(scope="module")
def views(tmp_path_factory, photos):
    """12 JPEG views of 6 real photos."""
    folder = tmp_path_factory.mktemp("parity-views")
    samples.write_photo_variants(folder, photos[:6], per_photo=2, seed=5)
    return folder


def _copy_with_metadata(src, dst, **model_changes):
    """A copy of a clsx ONNX file whose metadata says something else (same graph)."""
    model = onnx.load(str(src))
    doc = read_onnx_metadata(src)
    pre = dict(doc["model"]["preprocess"], **model_changes.pop("preprocess", {}))
    doc["model"] = dict(doc["model"], preprocess=pre, **model_changes)
    embed_in_onnx(model, doc)
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def unnormalized_onnx(tiny_onnx, tmp_path_factory):
    """The tiny graph, but its metadata forgets to normalize (mean 0, std 1): a broken artifact."""
    dst = tmp_path_factory.mktemp("broken") / "tiny.unnormalized.onnx"
    return _copy_with_metadata(tiny_onnx, dst, preprocess={"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]})


def test_export_agrees_with_torch_on_the_same_tensors(tiny, tiny_onnx, views):
    report = run_parity(tiny, [tiny_onnx], views, topk=5, batch_size=5, thresholds=Thresholds(min_top1=1.0, min_topk=1.0))
    (cand,) = report.candidates
    a = cand.agreement
    assert report.listed == report.compared == a.images == 12
    assert (a.top1, a.ref_top1_in_topk, a.topk_jaccard) == (1.0, 1.0, 1.0)
    assert a.max_abs_diff < 1e-3 and a.mean_kl < 1e-6
    assert cand.passed and report.passed and report.gate_error() is None
    assert cand.flips == () and cand.failed == () and cand.preprocess_differs == ()
    assert report.reference == "tiny@torch"
    assert cand.backend == "onnxrt" and "onnxruntime" in cand.runtime


def test_wrong_preprocessing_metadata_is_caught(tiny_onnx, unnormalized_onnx, views, caplog):
    """Each artifact gets the tensors its own metadata describes, so a wrong mean/std shows up as
    disagreement; --shared-input feeds the reference's tensors and compares the graphs only."""
    gate = Thresholds(min_top1=0.99, min_topk=1.0)
    with caplog.at_level("WARNING", logger="clsx"):
        own = run_parity(tiny_onnx, [unnormalized_onnx], views, thresholds=gate)
    (cand,) = own.candidates
    assert any(d.startswith("mean") for d in cand.preprocess_differs) and any(d.startswith("std") for d in cand.preprocess_differs)
    assert "preprocessing differs" in caplog.text
    assert cand.agreement.top1 < 0.99 and not own.passed
    assert cand.agreement.max_abs_diff > 0.1
    assert isinstance(own.gate_error(), GateFailedError) and own.gate_error().exit_code == 3
    assert "top-1 agreement" in cand.misses[0]

    shared = run_parity(tiny_onnx, [unnormalized_onnx], views, thresholds=gate, input_mode="shared")
    assert shared.candidates[0].agreement.top1 == 1.0 and shared.candidates[0].agreement.max_abs_diff == 0.0
    assert shared.passed


def test_flips_name_the_images_and_classes(tiny_onnx, unnormalized_onnx, views):
    report = run_parity(tiny_onnx, [unnormalized_onnx], views)
    (cand,) = report.candidates
    assert len(cand.flips) == len(cand.agreement.flips) > 0
    for f in cand.flips:
        assert f.ref_index != f.cand_index and f.ref_rank >= 2
        assert f.ref_label == LABELS[f.ref_index] and f.cand_label == LABELS[f.cand_index]
        assert 0 < f.ref_prob <= 1 and 0 < f.cand_prob <= 1
    rows = list(csv.DictReader(io.StringIO(report.flips_csv())))
    assert [r["path"] for r in rows] == [f.path for f in cand.flips] and {r["kind"] for r in rows} == {"flip"}
    assert report.passed  # no thresholds: nothing gated


class _FlakyRuntime(Runtime):
    """Wraps another runtime; fails on (or returns NaN for) chosen images, like a broken backend."""

    backend = "torch"

    def __init__(self, inner, *, raise_if_mean_above=None, nan_if_mean_below=None):
        super().__init__(inner.target)
        self.inner, self.hi, self.lo = inner, raise_if_mean_above, nan_if_mean_below
        self.calls = []

    def load_spec(self):
        return self.inner.spec

    def activate_impl(self):
        self.inner.activate()

    def deactivate_impl(self):
        pass

    def io_impl(self):
        return self.inner.io_impl()

    def describe_impl(self):
        return "flaky " + self.inner.describe()

    def run_impl(self, batch):
        self.calls.append(len(batch))
        means = batch.mean(axis=(1, 2, 3))
        if self.hi is not None and (means > self.hi).any():
            raise RuntimeError("kernel failed")
        out = self.inner.run(batch)
        if self.lo is not None:
            out[means < self.lo] = np.nan
        return out


def test_candidate_failures_are_reported_per_image_and_fail_the_gate(tiny, tiny_onnx, views):
    means = np.array([preprocess(p, tiny.spec.preprocess).mean() for p in sorted(views.iterdir())])
    hi, lo = np.sort(means)[-3], np.sort(means)[1]  # raises on the 3 brightest, NaN on the 2 darkest
    flaky = _FlakyRuntime(clsx.open(tiny_onnx), raise_if_mean_above=hi - 1e-6, nan_if_mean_below=lo + 1e-6)
    report = run_parity(tiny, [flaky], views, batch_size=4, thresholds=Thresholds(min_top1=0.5))
    (cand,) = report.candidates
    reasons = sorted(e.error for e in cand.failed)
    assert len(cand.failed) == 5 and cand.agreement.images == 7 and report.compared == 12
    assert sum("kernel failed" in r for r in reasons) == 3 and sum("non-finite" in r for r in reasons) == 2
    assert 1 in flaky.calls  # a failing batch was retried image by image
    assert cand.agreement.top1 == 1.0 and not cand.passed and cand.misses == ("failed on 5 of 12 images",)
    kinds = [r["kind"] for r in csv.DictReader(io.StringIO(report.flips_csv()))]
    assert kinds.count("failed") == 5


def test_unreadable_images_are_listed_not_dropped(tiny, tiny_onnx, views, tmp_path):
    folder = tmp_path / "imgs"
    shutil.copytree(views, folder)
    (folder / "zz_truncated.jpg").write_bytes((folder / sorted(p.name for p in folder.iterdir())[0]).read_bytes()[:300])
    (folder / "aa_text.png").write_text("not an image")
    report = run_parity(tiny_onnx, [tiny_onnx], folder)
    assert report.listed == 14 and report.compared == 12 and report.candidates[0].agreement.images == 12
    assert sorted(e.path.rsplit("/", 1)[-1] for e in report.image_errors) == ["aa_text.png", "zz_truncated.jpg"]
    doc = report.to_dict()
    assert doc["images"]["listed"] == 14 and len(doc["images"]["errors"]) == 2
    rows = list(csv.DictReader(io.StringIO(report.flips_csv())))
    assert [r["kind"] for r in rows] == ["unreadable", "unreadable"]


def test_incomparable_artifacts_and_bad_input(tiny, tiny_onnx, views, tmp_path):
    import torch

    other = tiny_model()
    other.module[-1] = torch.nn.Linear(16, 5)
    from dataclasses import replace

    five = type(other)(module=other.module.eval(), spec=replace(other.spec, num_classes=5, labels=None))
    with pytest.raises(ParityError, match="5 classes but the reference"):
        run_parity(tiny, [five], views)
    relabelled = _copy_with_metadata(tiny_onnx, tmp_path / "relabelled.onnx", labels=["cat", *LABELS[1:]])
    with pytest.raises(ParityError, match="labels differ.*class 0: 'cat' vs 'class0'"):
        run_parity(tiny_onnx, [relabelled], views)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParityError, match="no images found"):
        run_parity(tiny_onnx, [tiny_onnx], tmp_path / "empty")
    with pytest.raises(ParityError, match="at least one candidate"):
        run_parity(tiny_onnx, [], views)
    with pytest.raises(clsx.ClsxError):
        Thresholds(min_top1=1.5)


def test_preprocess_differences_and_guarded_runs(tiny_onnx):
    a = PreprocessSpec()
    assert preprocess_differences(a, PreprocessSpec()) == []
    diff = preprocess_differences(a, PreprocessSpec(mean=(0.5, 0.5, 0.5), interpolation="bicubic"))
    assert [d.split()[0] for d in diff] == ["interpolation", "mean"]
    rt = clsx.open(tiny_onnx)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    out, errors = run_guarded(rt, x)
    assert out.shape == (3, 10) and errors == [None, None, None]
    with pytest.raises(clsx.ClsxError):  # a batch that does not fit the model is a user error, not per image
        run_guarded(rt, x[:, :, :16])


def test_flip_ranks_follow_the_order_compare_uses():
    """INT8 logits tie exactly; the lower class index wins, as in clsx.core.agreement.compare."""
    from clsx.core.agreement import compare
    from clsx.tools.parity import _flip
    from clsx.core.spec import ModelSpec

    spec = ModelSpec(name="m", source="custom", num_classes=3, labels=("a", "b", "c"))
    ref, cand = np.array([[0.0, 1.0, 2.0]]), np.array([[0.0, 1.5, 1.5]])
    assert compare(ref, cand, topk=2).flips == (0,)
    f = _flip("x.jpg", ref[0], cand[0], spec, spec)
    assert (f.ref_index, f.ref_label, f.cand_index, f.cand_label, f.ref_rank) == (2, "c", 1, "b", 2)
    assert f.cand_prob == pytest.approx(np.exp(1.5) / (1 + 2 * np.exp(1.5)))


# ---------------------------------------------------------------------------------------------
# The command


def test_cli_table_json_flips_and_gate(tiny_onnx, unnormalized_onnx, views, tmp_path):
    res = runner.invoke(app, ["parity", str(tiny_onnx), str(tiny_onnx), "--images", str(views), "--min-top1", "1", "--min-top5", "1"])
    assert res.exit_code == 0, res.output
    header, row = res.stdout.strip().splitlines()
    assert header.split() == ["candidate", "backend", "images", "failed", "top1", "top1_ci95", "top5_member", "top5_jaccard",
                              "max_abs_diff", "mean_abs_diff", "mean_kl", "gate"]
    assert row.split()[2:6] == ["12", "0", "100.00%", "[75.75,100.00]"] and row.split()[-1] == "pass"

    flips = tmp_path / "flips.csv"
    res = runner.invoke(app, ["parity", str(tiny_onnx), str(unnormalized_onnx), str(tiny_onnx), "-i", str(views),
                              "--json", "--flips", str(flips), "--min-top1", "0.99", "--topk", "3"])
    assert res.exit_code == 3, res.output
    doc = json.loads(res.stdout)
    assert list(doc) == ["reference", "topk", "input_mode", "images", "thresholds", "candidates", "passed"]
    assert doc["topk"] == 3 and doc["passed"] is False and doc["images"] == {"listed": 12, "compared": 12, "errors": []}
    bad, good = doc["candidates"]
    assert bad["passed"] is False and good["passed"] is True and good["top1"] == 1.0
    assert good["top1_count"] == 12 and good["top1_ci95"][0] == pytest.approx(12 / (12 + 1.96 ** 2))
    assert set(bad) >= {"target", "backend", "runtime", "images", "top1", "ref_top1_in_topk", "topk_jaccard",
                        "max_abs_diff", "mean_abs_diff", "mean_kl", "flips", "failed", "preprocess_differs", "misses"}
    assert "parity gate failed" in res.stderr and "unnormalized" in res.stderr and "preprocessing differs" in res.stderr
    rows = list(csv.DictReader(flips.open()))
    assert len(rows) == len(bad["flips"]) > 0 and {r["candidate"] for r in rows} == {str(unnormalized_onnx)}

    res = runner.invoke(app, ["parity", str(tiny_onnx), str(unnormalized_onnx), "-i", str(views), "--flips", str(flips)])
    assert res.exit_code == 1 and "--force" in res.stderr and res.stdout == ""  # refused before any work
    res = runner.invoke(app, ["parity", str(tiny_onnx), str(unnormalized_onnx), "-i", str(views), "--shared-input", "--min-top1", "1"])
    assert res.exit_code == 0, res.output


def test_cli_errors_are_one_line(tiny_onnx, views, tmp_path):
    five = _copy_with_metadata(tiny_onnx, tmp_path / "five.onnx", num_classes=5, labels=None)
    # --random-weights: the fixtures' weights are random on purpose (else that warning comes first)
    res = runner.invoke(app, ["parity", str(tiny_onnx), str(five), "-i", str(views), "--random-weights"])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "has 5 classes but the reference" in res.stderr
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["parity", str(tiny_onnx), str(tiny_onnx), "-i", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "no images found" in res.stderr
    res = runner.invoke(app, ["parity", str(tiny_onnx), "-i", str(views)])
    assert res.exit_code == 2  # usage: no candidate
    bad = tmp_path / "bad"
    shutil.copytree(views, bad)
    (bad / "broken.jpg").write_bytes(b"garbage")
    res = runner.invoke(app, ["parity", str(tiny_onnx), str(tiny_onnx), "-i", str(bad), "--strict"])
    assert res.exit_code == 1 and "broken.jpg" in res.stderr and "--strict" in res.stderr
    assert res.stdout.splitlines()[1].split()[2] == "12"  # the table still came out


def test_write_flips_refuses_overwrite(tiny_onnx, views, tmp_path):
    from clsx.tools.parity import write_flips

    report = run_parity(tiny_onnx, [tiny_onnx], views)
    out = tmp_path / "f.csv"
    out.write_text("keep")
    with pytest.raises(OutputExistsError):
        write_flips(report, out)
    assert out.read_text() == "keep"
    write_flips(report, out, force=True)
    assert out.read_text().startswith("candidate,path,kind")


def test_flips_into_a_missing_folder(tiny_onnx, views, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["parity", str(tiny_onnx), str(tiny_onnx), "-i", str(views), "--flips", "new/deeper/flips.csv"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "new" / "deeper" / "flips.csv").read_text().startswith("candidate,path,kind")
    res = runner.invoke(app, ["parity", str(tiny_onnx), str(tiny_onnx), "-i", str(views), "--flips", "other/"])
    assert res.exit_code == 1 and res.stdout == ""  # refused before any model loads
    assert res.stderr.strip() == "clsx: error: --flips other/ names a folder; give the file to write in it, e.g. other/flips.csv"
    assert not (tmp_path / "other").exists()


def test_cli_random_weights_flag_reaches_every_target(tiny_onnx, photos):
    """--random-weights on parity silences the warning for artifacts too (their metadata says random)."""
    args = ["parity", str(tiny_onnx), str(tiny_onnx), "-i", str(photos[0])]
    loud = runner.invoke(app, args)
    assert loud.exit_code == 0, loud.output
    assert "clsx: warning: random weights: predictions are meaningless" in loud.stderr
    quiet = runner.invoke(app, [*args, "--random-weights"])
    assert quiet.exit_code == 0, quiet.output
    assert "random weights: predictions are meaningless" not in quiet.stderr
