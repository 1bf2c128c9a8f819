"""clsx val: labelled accuracy on real photos with real ImageNet weights (tf_efficientnet_lite0).

The data: JPEG views of scikit-image photos whose ImageNet classes are known, in an ImageFolder whose
class folders are named every supported way -- chelsea (a cat) under tabby's WordNet id n02123045,
coffee under espresso's n07920052, motorcycle_left under the index 665 (moped), rocket under the label
text ``Missile`` (657) -- plus one file that is not an image. The model's top-1 on the cat views is
mostly Egyptian cat / tiger cat, so the figures are neither all right nor all wrong. Expected figures
are computed independently from ``Classifier.predict`` and a hand-written class table.
"""

import json
import math

import pytest
from runtimes.tiny_models import tiny_model
from typer.testing import CliRunner

from clsx.cli import app
from clsx.core.agreement import wilson_interval
from clsx.core.errors import GateFailedError
from clsx.core.spec import ModelSpec
from clsx.predict.classifier import Classifier
from clsx.tools.val import GATE_RULE, ValError, class_map, imagenet_wnids, read_dataset, run_val
from clsx.zoo import samples

runner = CliRunner()

# class folder -> (source photo, views, the ImageNet-1k index it names: written out by hand)
FOLDERS = {
    "n02123045": ("chelsea", 6, 281),  # tabby
    "n07920052": ("coffee", 5, 967),  # espresso
    "665": ("motorcycle_left", 4, 665),  # moped
    "Missile": ("rocket", 5, 657),  # label text, another case
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photo):
    root = tmp_path_factory.mktemp("val") / "imagefolder"
    for i, (name, (stem, views, _)) in enumerate(FOLDERS.items()):
        samples.write_photo_variants(root / name, [photo[stem]], per_photo=views, seed=i, size=256)
    (root / "n07920052" / "zz_broken.jpg").write_bytes(b"this is not a JPEG")
    return root


@pytest.fixture(scope="module")
def truth(folder):
    """(path, true index) of every readable image, hand-mapped."""
    return [(p, FOLDERS[d.name][2]) for d in sorted(folder.iterdir()) for p in sorted(d.iterdir())
            if p.name != "zz_broken.jpg"]


def _expected(target, truth, k=5):
    """Correct top-1 / top-k counts, overall and per class, from Classifier.predict."""
    with Classifier(target) as clf:
        preds = clf.predict([p for p, _ in truth], topk=k)
    assert all(p.ok for p in preds)
    hit1 = [p.indices[0] == y for p, (_, y) in zip(preds, truth)]
    hitk = [y in p.indices for p, (_, y) in zip(preds, truth)]
    per = {}
    for (_, y), a, b in zip(truth, hit1, hitk):
        n, c1, ck = per.get(y, (0, 0, 0))
        per[y] = (n + 1, c1 + a, ck + b)
    return sum(hit1), sum(hitk), per


@pytest.fixture(scope="module")
def expected_torch(lite0, truth):
    return _expected(lite0, truth)


@pytest.fixture(scope="module")
def expected_onnx(lite0_onnx, truth):
    return _expected(lite0_onnx, truth)


def test_wilson_interval_against_hand_computed_values():
    # 8/10, z = 1.96: centre (0.8 + 1.9208/10) / 1.38416 = 0.716738, half-width 0.226581
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490157, abs=1e-6) and hi == pytest.approx(0.943319, abs=1e-6)
    lo, hi = wilson_interval(10, 10)  # all correct: the lower bound is n / (n + z^2) = 10 / 13.8416
    assert lo == pytest.approx(10 / (10 + 1.96**2), abs=1e-9) and hi == 1.0
    assert wilson_interval(0, 10) == (0.0, pytest.approx(1.96**2 / (10 + 1.96**2), abs=1e-9))
    with pytest.raises(ValueError):
        wilson_interval(1, 0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_wordnet_ids_come_from_timm_in_imagenet_order(lite0):
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764" and wnids[281] == "n02123045" and wnids[967] == "n07920052"
    names = ["n02123045", "N07920052", "665", "Missile", "tiger_cat", " Egyptian  Cat "]
    assert class_map(names, lite0.spec) == {"n02123045": 281, "N07920052": 967, "665": 665, "Missile": 657,
                                            "tiger_cat": 282, " Egyptian  Cat ": 285}


def test_class_names_that_map_to_nothing_are_one_error(lite0):
    with pytest.raises(ValError) as e:
        class_map(["n02123045", "dogs", "1000", "n99999999"], lite0.spec, model="lite0")
    msg = str(e.value)
    assert "\n" not in msg and "3 of 4 class names" in msg and "'dogs', '1000', 'n99999999'" in msg
    with pytest.raises(ValError, match=r"ambiguous label text 'cardigan' \(classes 264, 474\)"):
        class_map(["cardigan"], lite0.spec)
    own = ModelSpec(name="pets", source="custom", num_classes=3, labels=("cat", "dog", "n02123045"))
    assert class_map(["Cat", "1", "n02123045"], own) == {"Cat": 0, "1": 1, "n02123045": 2}  # its own wnid label first
    with pytest.raises(ValError, match="WordNet ids name ImageNet-1k classes, and pets's are not ImageNet-1k's"):
        class_map(["n07920052"], own, model="pets")
    bare = ModelSpec(name="bare", source="custom", num_classes=1000)  # no labels: taken in ImageNet-1k order
    assert class_map(["n02123045"], bare) == {"n02123045": 281}


def test_imagefolder_accuracy_matches_what_the_models_predict(lite0, lite0_onnx, folder, truth, expected_torch, expected_onnx):
    report = run_val([lite0, lite0_onnx], folder, topk=5, batch_size=8, per_class=True)
    n = len(truth)
    assert report.listed == n + 1 and report.evaluated == n == 20 and report.classes == 4
    assert [u.path.endswith("zz_broken.jpg") for u in report.unreadable] == [True]
    torch_res, onnx_res = report.artifacts
    for res, (c1, ck, per), backend in [(torch_res, expected_torch, "torch"), (onnx_res, expected_onnx, "onnxrt")]:
        assert res.backend == backend
        assert (res.top1.correct, res.topk.correct, res.top1.n, res.topk.n) == (c1, ck, n, n)
        assert res.top1.value == pytest.approx(c1 / n) and res.top1.ci95 == wilson_interval(c1, n)
        assert {c.index: (c.top1.n, c.top1.correct, c.topk.correct) for c in res.per_class} == per
    # the figures are not trivial: the cat views are mostly called Egyptian cat (285), not tabby (281)
    per281 = next(c for c in torch_res.per_class if c.index == 281)
    assert per281.names == ("n02123045",) and per281.label == "tabby" and per281.top1.correct < per281.top1.n
    assert per281.topk.correct == per281.topk.n  # ... but tabby is in every view's top-5
    assert 0 < torch_res.top1.correct < n
    assert torch_res.drop_top1_pts is None and torch_res.drop_topk_pts is None
    assert onnx_res.drop_top1_pts == pytest.approx(100 * (expected_torch[0] - expected_onnx[0]) / n)
    assert onnx_res.drop_topk_pts == pytest.approx(100 * (expected_torch[1] - expected_onnx[1]) / n)
    assert report.passed and report.gate_error() is None  # no gate asked for


def test_csv_with_relative_and_absolute_paths(lite0_onnx, folder, truth, expected_onnx, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    spelled = {281: "n02123045", 967: "espresso", 665: "665", 657: "MISSILE"}  # wnid, label text, index
    rows = ["path,label"]
    for i, (p, y) in enumerate(truth):
        shown = str(p) if i % 3 == 0 else f"../../{p.relative_to(folder.parent.parent)}"
        rows.append(f"{shown},{spelled[y]}")
    rows.append("missing.jpg,espresso")  # listed but unreadable: counted and excluded
    csv_path = lists / "val.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    assert read_dataset(csv_path).samples[1].path.resolve() == truth[1][0].resolve()
    report = run_val([lite0_onnx], csv_path, batch_size=8)
    (res,) = report.artifacts
    assert report.data_format == "csv" and report.listed == len(truth) + 1 and report.evaluated == len(truth)
    assert [u.path for u in report.unreadable] == [str(lists / "missing.jpg")]
    assert (res.top1.correct, res.topk.correct) == expected_onnx[:2]
    assert res.per_class is None


def test_cli_json_gate_on_the_wilson_lower_bound(lite0_onnx, folder, expected_onnx, truth):
    n, c1 = len(truth), expected_onnx[0]
    lo, _ = wilson_interval(c1, n)
    point = c1 / n
    between = round((lo + point) / 2, 4)  # the point estimate passes this, the lower bound does not
    res = runner.invoke(app, ["val", str(lite0_onnx), str(folder), "--json", "--min-top1", str(between), "-b", "8"])
    assert res.exit_code == GateFailedError.exit_code == 3, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == {"data", "topk", "confidence", "gate", "artifacts", "passed"}
    assert set(doc["data"]) == {"path", "format", "listed", "evaluated", "classes", "unreadable"}
    assert doc["gate"] == {"min_top1": between, "rule": GATE_RULE} and doc["passed"] is False
    (a,) = doc["artifacts"]
    assert set(a) == {"target", "backend", "runtime", "n", "top1", "topk", "drop_top1_pts", "drop_topk_pts",
                      "nonfinite", "passed", "misses", "per_class"}
    assert a["top1"]["correct"] == c1 and a["n"] == n and a["per_class"] is None
    assert a["top1"]["ci95"][0] == pytest.approx(lo) and a["topk"]["correct"] == expected_onnx[1]
    assert doc["data"]["evaluated"] == n and len(doc["data"]["unreadable"]) == 1
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("clsx: error: val gate failed:") and "lower bound" in errors[0]


def test_cli_table_per_class_and_a_gate_that_passes(lite0_onnx, folder, expected_onnx, truth):
    n, c1 = len(truth), expected_onnx[0]
    below = math.floor(100 * wilson_interval(c1, n)[0]) / 100 - 0.01
    res = runner.invoke(app, ["val", str(lite0_onnx), str(folder), "--per-class", "--min-top1", f"{below:.2f}"])
    assert res.exit_code == 0, res.output
    summary, per_class = res.stdout.split("\n\n")
    head, row = [line.split() for line in summary.splitlines()]
    assert head == ["artifact", "backend", "n", "unreadable", "top1", "top1_ci95", "top5", "top5_ci95",
                    "drop_top1", "drop_top5", "gate"]
    assert row[1:4] == ["onnxrt", str(n), "1"] and row[4] == f"{100 * c1 / n:.2f}" and row[-1] == "pass"
    lines = per_class.splitlines()
    assert lines[0].split() == ["artifact", "class", "n", "top1", "top5", "label"]
    rows = {int(r.split()[1]): r.split() for r in lines[1:]}
    per = expected_onnx[2]
    assert sorted(rows) == [281, 657, 665, 967]
    for idx, (cn, cc1, cck) in per.items():
        assert rows[idx][2:5] == [str(cn), f"{100 * cc1 / cn:.2f}", f"{100 * cck / cn:.2f}"]
    assert rows[281][5:] == ["tabby", "(n02123045)"] and rows[657][5:] == ["missile"]
    assert "1 of 21 images could not be read" in res.stderr


def test_cli_unknown_class_folder_and_missing_data_are_one_line(lite0_onnx, tmp_path, photo):
    bad = tmp_path / "bad"
    samples.write_photo_variants(bad / "n02123045", [photo["chelsea"]], per_photo=1)
    samples.write_photo_variants(bad / "house_cats", [photo["chelsea"]], per_photo=1)
    res = runner.invoke(app, ["val", str(lite0_onnx), str(bad)])
    assert res.exit_code == 1 and res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("clsx: error: 1 of 2 class folders in ") and "'house_cats'" in line and "WordNet id" in line

    missing = tmp_path / "nowhere"
    res = runner.invoke(app, ["val", str(lite0_onnx), str(missing)])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.strip() == f"clsx: error: {missing}: no such file or directory"


def test_bad_csv_rows_and_different_classifiers(lite0_onnx, folder, tmp_path):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("a.jpg,281\nb.jpg\n")
    with pytest.raises(ValError, match=r"bad.csv:2: expected two fields, path,label"):
        run_val([lite0_onnx], csv_path)
    with pytest.raises(ValError, match="has 10 classes but .* has 1000; val compares artifacts of the same classifier"):
        run_val([lite0_onnx, tiny_model()], folder)
    with pytest.raises(ValError, match="DATA must be an ImageFolder tree"):
        run_val([lite0_onnx], lite0_onnx)
