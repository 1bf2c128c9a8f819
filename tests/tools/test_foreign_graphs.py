"""ONNX graphs made elsewhere, through every command (issue: any ONNX in).

Four graphs, each made differently (tests/foreign_graphs.py): a plain dynamo export with a static
batch of 1, input ``x`` and external data; timm's TorchScript ``onnx_export`` of tf_efficientnet_lite0
with its real weights; an NHWC float graph with a dynamic batch; a uint8 NHWC graph with a fixed batch
of 4 that normalizes inside. For each: info, infer, parity against clsx's own export of the same
weights (100 % top-1, the reference's top-1 in the top-5), calib in both layouts (its output runs
without flags), a TensorRT-RTX build (CPU builder), bench and triton-repo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import foreign_graphs  # noqa: E402

from clsx.cli import app  # noqa: E402
from clsx.zoo import samples  # noqa: E402

runner = CliRunner()
KINDS = ("plain", "timm", "nhwc", "uint8")
PRESET = {"plain": "tv:resnet18", "timm": "timm:tf_efficientnet_lite0", "nhwc": "tv:resnet18", "uint8": "tv:resnet18"}
#: What each graph's signature says: input name, dtype, layout, batch (None: dynamic).
SAYS = {"plain": ("x", "float32", "NCHW", 1), "timm": ("input0", "float32", "NCHW", None),
        "nhwc": ("image", "float32", "NHWC", None), "uint8": ("pixels", "uint8", "NHWC", 4)}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, lite0, lite0_onnx) -> dict[str, Path]:
    made = foreign_graphs.make_all(tmp_path_factory.mktemp("foreign"), lite0.module)
    made["lite0_clsx"] = lite0_onnx
    return made


@pytest.fixture(scope="module")
def images(tmp_path_factory, photos) -> Path:
    folder = tmp_path_factory.mktemp("foreign-photos")
    samples.write_photo_variants(folder, photos[:6], per_photo=2, size=256)
    return folder


def cli(*args: object, code: int = 0):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, f"exit {res.exit_code}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    return res


def reference(kind: str, graphs) -> Path:
    return graphs["lite0_clsx"] if kind == "timm" else graphs["r18_clsx"]


@pytest.mark.parametrize("kind", KINDS)
def test_info_says_what_the_graph_says_and_what_is_missing(graphs, kind):
    out = cli("info", graphs[kind]).stdout
    name, dtype, layout, batch = SAYS[kind]
    assert f"input       {name} {dtype} [" in out and "no clsx metadata: read from the graph" in out
    assert (f"] {layout}" in out) == (layout == "NHWC")  # NCHW is the default and not repeated
    assert ("batch       fixed " + str(batch) if batch else "batch       dynamic") in out
    assert "1000 classes" in out and "preprocess  MISSING: pass --preset MODEL" in out
    assert ("resnet18_static.onnx.data (46.7 MB)" in out) == (kind == "plain")


def test_without_preprocessing_one_line_lists_exactly_the_options(graphs, images):
    res = cli("infer", graphs["plain"], images, code=1)
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    assert ("pass --preset MODEL (e.g. timm:tf_efficientnet_lite0), or --input-size, --mean, --std, --interpolation, "
            "--crop-pct/--resize-size, --channel-order, --input-range, --labels") in res.stderr
    assert "Python" not in res.stderr and "spec=" not in res.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_infer_with_a_preset_prints_the_chosen_values(graphs, images, kind):
    res = cli("infer", graphs[kind], images, "--preset", PRESET[kind], "-k", "3", "-b", "5")
    rows = res.stdout.strip().splitlines()
    assert len(rows) == 13 and all(r.endswith(",") for r in rows[1:])  # no error column filled
    layout, dtype = SAYS[kind][2], SAYS[kind][1]
    assert f"{layout} {dtype} (from preset {PRESET[kind]}" in res.stderr and "labels: 1000 names" in res.stderr
    if kind == "timm":  # real weights: the labels are ImageNet's, the photos recognisable
        assert any(",espresso," in r or ",cup," in r for r in rows if "coffee" in r)


def test_flags_beat_the_preset_and_the_graph_gives_the_size(graphs, images):
    import clsx

    rt = clsx.open(graphs["nhwc"], preset="tv:resnet18", preprocess={"interpolation": "bicubic", "crop_pct": 1.0})
    pre = rt.spec.preprocess
    assert (pre.input_size, pre.resize_size, pre.interpolation, pre.mean) == ((3, 64, 64), 64, "bicubic", (0.485, 0.456, 0.406))
    bare = clsx.open(graphs["nhwc"], preprocess={"mean": [0.5], "std": [0.25]})  # no preset: flags alone
    assert bare.spec.preprocess.mean == (0.5, 0.5, 0.5) and bare.spec.labels is None
    preds = clsx.Classifier(rt).predict(sorted(images.iterdir())[:3], topk=2)
    assert all(p.error is None and len(p.indices) == 2 and p.labels[0] for p in preds)
    with pytest.raises(clsx.ClsxError, match="preprocessing given says 3x32x32 but the graph takes 3x64x64"):
        clsx.open(graphs["plain"], preset="tv:resnet18", preprocess={"input_size": (3, 32, 32)}).spec


@pytest.mark.parametrize("kind", KINDS)
def test_parity_with_clsx_own_export_of_the_same_weights(graphs, images, kind):
    res = cli("parity", reference(kind, graphs), graphs[kind], "-i", images, "--preset", PRESET[kind],
              "--min-top1", "1", "--min-top5", "1", "--json")
    cand = json.loads(res.stdout)["candidates"][0]
    assert cand["images"] == 12 and cand["top1"] == 1.0 and cand["ref_top1_in_topk"] == 1.0
    assert cand["max_abs_diff"] < 1e-3 and not cand["preprocess_differs"]


def _qdq(path: Path) -> int:
    import onnx

    return sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node)


@pytest.fixture(scope="module")
def int8(graphs, images, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Each graph calibrated in both layouts (8 images, 4 held out)."""
    out = tmp_path_factory.mktemp("foreign-int8")
    made = {}
    for kind in KINDS:
        for target in ("tensorrt", "cpu"):
            path = out / f"{kind}.{target}.int8.onnx"
            res = cli("calib", graphs[kind], images, "--preset", PRESET[kind], "--for", target, "--num", "8",
                      "--eval-num", "4", "-o", path)
            assert res.stdout.strip() == str(path)
            made[kind, target] = path
    return made


@pytest.mark.parametrize("kind", KINDS)
def test_calib_output_carries_what_later_commands_need(int8, graphs, images, kind):
    from clsx.core.metadata import read_metadata

    name, dtype, layout, batch = SAYS[kind]
    for target in ("tensorrt", "cpu"):
        doc = read_metadata(int8[kind, target])
        assert doc["precision"] == "int8" and doc["model"]["num_classes"] == 1000 and len(doc["model"]["labels"]) == 1000
        assert doc["inputs"][0]["name"] == name and doc["inputs"][0]["dtype"] == dtype
        assert (doc["inputs"][0].get("layout") or "NCHW") == layout and doc["outputs"][0]["shape"][-1] == 1000
        assert doc["model"]["preprocess"]["input_size"] == [3, 224, 224] if kind == "timm" else [3, 64, 64]
        assert doc["calibration"]["target"] == target and doc["calibration"]["eval_images"] >= 2
        rows = cli("infer", int8[kind, target], images, "-k", "1").stdout.strip().splitlines()  # no flags
        assert len(rows) == 13
    # every graph really is quantized in both layouts: timm's TorchScript graph too, whose dynamic
    # "same" padding once made every layer look like shape arithmetic (0 Q/DQ nodes, labelled INT8)
    assert _qdq(int8[kind, "tensorrt"]) > 10 and _qdq(int8[kind, "cpu"]) > 10


def test_int8_of_foreign_graphs_agrees_with_fp32(int8, graphs, images):
    for kind in ("plain", "uint8"):
        res = cli("parity", graphs[kind], int8[kind, "tensorrt"], int8[kind, "cpu"], "-i", images,
                  "--preset", PRESET[kind], "--json")
        for cand in json.loads(res.stdout)["candidates"]:
            assert cand["images"] == 12 and cand["failed"] == [] and cand["max_abs_diff"] > 0  # really INT8


@pytest.mark.parametrize("kind", KINDS)
def test_build_with_tensorrt_rtx_needs_no_preprocessing(graphs, int8, tmp_path, kind):
    import tensorrt_rtx  # noqa: F401  (installed by the README's install line: a missing one must fail, not skip)

    from clsx.core.metadata import read_metadata

    name, dtype, layout, batch = SAYS[kind]
    plan = tmp_path / f"{kind}.plan"
    cli("build", graphs[kind], "--target", "rtx", "-o", plan)
    doc = read_metadata(plan)
    profile = doc["tensorrt"]["profile"]
    assert profile["input"] == name and doc["model"]["num_classes"] == 1000 and doc["model"]["preprocess"] is None
    assert doc["inputs"][0]["dtype"] == dtype and (doc["inputs"][0].get("layout") or "NCHW") == layout
    assert [profile[k][0] for k in ("min", "opt", "max")] == ([batch] * 3 if batch else [1, 8, 32])
    if batch is None:  # a dynamic batch takes the profile flags
        cli("build", graphs[kind], "--target", "rtx", "-o", tmp_path / "b.plan", "--max-batch", "4", "--opt-batch", "2")
        assert read_metadata(tmp_path / "b.plan")["tensorrt"]["profile"]["max"][0] == 4
    else:  # a fixed batch refuses another profile in one line
        res = cli("build", graphs[kind], "--target", "rtx", "-o", tmp_path / "b.plan", "--max-batch", "8", code=1)
        assert f"fixed batch of {batch}" in res.stderr and "leave out --min/--opt/--max-batch" in res.stderr
    q = tmp_path / f"{kind}.int8.plan"
    cli("build", int8[kind, "tensorrt"], "--target", "rtx", "-o", q)
    side = read_metadata(q)
    assert side["precision"] == "int8" and side["model"]["preprocess"]["input_size"][1] in (64, 224)
    if kind != "timm":
        assert side["tensorrt"]["network"]["qdq_layers"] > 0


@pytest.mark.parametrize("kind", KINDS)
def test_bench_times_foreign_graphs(graphs, images, kind):
    res = cli("bench", graphs[kind], "--batch", "1,5", "--iters", "2", "--rounds", "1", "--warmup", "0", "--json")
    results = json.loads(res.stdout)["results"]
    assert [r["batch"] for r in results] == [1, 5] and all(r["samples"] == 2 for r in results)
    assert "no preprocessing given; model-only timing on noise inputs" in res.stderr
    e2e = cli("bench", graphs[kind], "--batch", "4", "--iters", "1", "--rounds", "1", "--warmup", "0", "-i", images,
              "--max-images", "4", "--preset", PRESET[kind], "--json")
    assert {r["mode"] for r in json.loads(e2e.stdout)["results"]} == {"model", "e2e"}


@pytest.mark.parametrize("kind", KINDS)
def test_triton_repo_reads_names_and_dims_from_the_graph(graphs, tmp_path, kind):
    from clsx.scale.triton_repo import parse_config

    pytest.importorskip("tritonclient", reason="needs tritonclient for Triton's config schema")
    name, dtype, layout, batch = SAYS[kind]
    cli("triton-repo", graphs[kind], "-o", tmp_path / "repo", "--name", "m")
    cfg = parse_config((tmp_path / "repo" / "m" / "config.pbtxt").read_text())
    dims = list(cfg.input[0].dims)
    assert cfg.input[0].name == name and cfg.output[0].name == foreign_graphs_output(graphs[kind])
    assert cfg.max_batch_size == (0 if batch and batch > 1 else 1 if batch == 1 else 32)
    assert dims == ([batch, 64, 64, 3] if batch and batch > 1 else [64, 64, 3] if layout == "NHWC"
                    else [3, 224, 224] if kind == "timm" else [3, 64, 64])
    files = {p.name for p in (tmp_path / "repo" / "m" / "1").iterdir()}
    assert files == ({"model.onnx", "resnet18_static.onnx.data"} if kind == "plain" else {"model.onnx"})


def foreign_graphs_output(path: Path) -> str:
    from clsx.core.graph_io import read_graph_io

    return read_graph_io(path).output_name


def test_annotate_once_then_every_command_needs_no_flags(graphs, images, tmp_path):
    from clsx.core.metadata import read_metadata

    out = tmp_path / "annotated" / ""
    res = cli("annotate", graphs["plain"], "--preset", "tv:resnet18", "-o", f"{out}/")
    new = Path(res.stdout.strip())
    assert new.name == "resnet18_static.clsx.onnx" and (new.parent / "resnet18_static.onnx.data").is_file()
    doc = read_metadata(new)
    assert doc["model"]["preprocess"]["resize_size"] == 73 and doc["producer"]["annotated_by"].endswith("--preset tv:resnet18")
    rows = cli("infer", new, images, "-k", "1").stdout.strip().splitlines()
    assert len(rows) == 13
    parity = cli("parity", graphs["r18_clsx"], new, "-i", images, "--min-top1", "1", "--json")
    assert json.loads(parity.stdout)["candidates"][0]["top1"] == 1.0
    again = cli("annotate", new, "--preset", "tv:resnet18", code=1)
    assert "already carries clsx metadata" in again.stderr

    side_src = tmp_path / "side" / "g.onnx"
    side_src.parent.mkdir()
    side_src.write_bytes(graphs["uint8"].read_bytes())
    cli("annotate", side_src, "--crop-pct", "0.875", "--labels", _labels(tmp_path), "--sidecar")
    assert side_src.read_bytes() == graphs["uint8"].read_bytes()  # untouched: the document is beside it
    side = read_metadata(side_src)
    assert side["model"]["labels"][:2] == ["c0", "c1"] and side["inputs"][0]["layout"] == "NHWC"
    assert len(cli("infer", side_src, images).stdout.strip().splitlines()) == 13
    bad = cli("annotate", graphs["nhwc"], "--preset", "tv:resnet18", "--input-size", "32", "-o", tmp_path / "x.onnx", code=1)
    assert "says 3x32x32 but the graph takes 3x64x64" in bad.stderr and not (tmp_path / "x.onnx").exists()


def _labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(f"c{i}" for i in range(1000)) + "\n")
    return path


def test_preset_on_clsx_artifacts_is_not_used(graphs, images):
    res = cli("parity", graphs["r18_clsx"], graphs["nhwc"], "-i", images, "--preset", "tv:resnet18",
              "--mean", "0.5", "--std", "0.5", "--json")  # flags reach the foreign graph only
    cand = json.loads(res.stdout)["candidates"][0]
    assert cand["preprocess_differs"] and cand["max_abs_diff"] > 0
    res = cli("infer", graphs["r18_clsx"], images, "--preset", "tv:resnet18", "-k", "1")
    assert "carries clsx metadata: preset tv:resnet18 is not used" in res.stderr
    assert len(res.stdout.strip().splitlines()) == 13


def test_val_scores_a_foreign_graph_like_clsx_own_export(graphs, photos, tmp_path):
    """clsx val on timm's own TorchScript export with --preset: the same labelled accuracy, image by
    image, as clsx's export of the same real weights (labels: what the photos show)."""
    known = {"coffee.png": "espresso", "chelsea.png": "tiger cat"}
    rows = [f"{p},{known[p.name]}" for p in photos if p.name in known]
    data = tmp_path / "val.csv"
    data.write_text("path,label\n" + "\n".join(rows) + "\n")
    res = cli("val", graphs["lite0_clsx"], graphs["timm"], data, "--preset", PRESET["timm"], "--json")
    report = json.loads(res.stdout)
    own, foreign = report["artifacts"]
    assert own["n"] == foreign["n"] == len(rows) == 2
    for key in ("top1", "topk"):
        assert foreign[key]["correct"] == own[key]["correct"] == 2 and foreign[key]["ci95"] == own[key]["ci95"]
