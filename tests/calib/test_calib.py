"""INT8 calibration: TensorRT-friendly Q/DQ graphs, the reader, the cache, bad input, and the accuracy gate."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

import clsx
from clsx.calib import CalibOptions, calibrate
from clsx.calib.quantize import graph_problems
from clsx.calib.reader import BatchStream, CalibrationDataError, split_images
from clsx.cli import app
from clsx.core.errors import OutputExistsError, SpecError
from clsx.core.metadata import read_metadata
from clsx.core.spec import PreprocessSpec

runner = CliRunner()


def _qdq_stats(path):
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in q + dq if len(n.input) > 2 and n.input[2] in inits]
    int32_dq = [n for n in dq if n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT32]
    per_channel = [n for n in dq if n.input[0] in inits and numpy_helper.to_array(inits[n.input[1]]).size > 1]
    return q, dq, zero_points, int32_dq, per_channel


def _logits_stay_float(path):
    """The network output comes straight from the float classifier layer: no Q/DQ pair clips or ties the logits."""
    model = onnx.load(str(path))
    producers = {o: n for n in model.graph.node for o in n.output}
    out = model.graph.output[0]
    return (out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            and producers[out.name].op_type in ("Gemm", "MatMul", "Add", "Flatten", "Reshape")
            and not any(n.op_type == "QuantizeLinear" and n.input[0] == out.name for n in model.graph.node))


def test_qdq_graph_is_what_tensorrt_accepts(small_onnx, photo_split, tmp_path, caplog):
    calib_dir, _ = photo_split
    res = calibrate(small_onnx, calib_dir, tmp_path / "r18.int8.onnx", num=16, batch=8, keep_float="none", keep_sensitive=0)
    q, dq, zps, int32_dq, per_channel = _qdq_stats(res.path)
    assert q and dq, "no Q/DQ nodes were inserted"
    assert all(np.all(z == 0) for z in zps), "activations/weights must be symmetric (zero point 0)"
    assert all(z.dtype == np.int8 for z in zps)
    assert not int32_dq, "biases must stay float (TensorRT rejects int32-bias DequantizeLinear)"
    assert per_channel, "weights must be quantized per channel"
    assert graph_problems(res.path) == []
    assert _logits_stay_float(res.path)
    model = onnx.load(str(res.path))
    fed = {n.op_type for n in model.graph.node for i in n.input if i in {d.output[0] for d in dq}}
    assert fed == {"Conv", "Gemm", "Add"}, "Q/DQ feeds weighted layers (and residual adds, which TensorRT fuses into them) only"
    producers = {o: n for n in model.graph.node for o in n.output}
    assert all(producers[n.input[0]].op_type not in ("Conv", "Gemm") for n in q if n.input[0] in producers), \
        "weighted layers' outputs are not quantized (TensorRT fuses activation and requantization)"
    doc = read_metadata(res.path)
    assert doc["precision"] == "int8" and doc["calibration"]["method"] == "minmax"
    assert doc["calibration"]["target"] == "tensorrt" and doc["calibration"]["bias_corrected_layers"] > 0
    assert doc["parent_sha256"] != read_metadata(small_onnx).get("parent_sha256")
    assert json.loads((tmp_path / "r18.int8.onnx.json").read_text()) == doc
    import onnxruntime as ort

    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((3, 3, 64, 64), np.float32)})[0]
    assert out.shape == (3, 10)
    import clsx

    with caplog.at_level("WARNING"), clsx.open(res.path, backend="onnxrt") as rt:
        rt.run(np.zeros((1, 3, 64, 64), np.float32))
    assert "--for cpu" in caplog.text, "running the TensorRT layout on ONNX Runtime CPU must point to the cpu layout"


def _int8_weighted(path):
    """Names of the weighted layers whose weight goes through a DequantizeLinear (computed in INT8)."""
    model = onnx.load(str(path))
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in dq_out}


def test_classifier_stays_float_by_default_and_keep_float_chooses(small_onnx, photo_split, tmp_path):
    """(--keep-sensitive 0 here: see the next test.) Default --keep-float last: the classifier (writes the logits)
    stays float, as TensorRT practice does; the
    metadata says so and that is not a coverage failure. first,last also keeps the stem (reads the image); none
    quantizes every weighted layer."""
    calib_dir, _ = photo_split
    cache = tmp_path / "r18.calib.json"
    res = calibrate(small_onnx, calib_dir, tmp_path / "default.onnx", num=8, batch=4, cache=cache, keep_sensitive=0)
    graph = onnx.load(str(res.path)).graph
    weighted = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    stem, fc = weighted[0].name, weighted[-1].name
    assert weighted[-1].op_type == "Gemm"
    assert _int8_weighted(res.path) == {n.name for n in weighted} - {fc}
    cal = read_metadata(res.path)["calibration"]
    assert cal["keep_float"] == ["last"] and cal["kept_float_layers"] == [fc]
    assert cal["float_layers"] == [], "layers kept on purpose are not the gate's fallback"

    both = calibrate(small_onnx, calib_dir, tmp_path / "both.onnx", num=8, batch=4, cache=cache, keep_float="first,last", keep_sensitive=0)
    assert _int8_weighted(both.path) == {n.name for n in weighted} - {stem, fc}
    assert read_metadata(both.path)["calibration"]["kept_float_layers"] == [stem, fc]
    full = calibrate(small_onnx, calib_dir, tmp_path / "none.onnx", num=8, batch=4, cache=cache, keep_float="none", keep_sensitive=0)
    assert _int8_weighted(full.path) == {n.name for n in weighted}
    cal = read_metadata(full.path)["calibration"]
    assert cal["keep_float"] == [] and cal["kept_float_layers"] == []
    res = runner.invoke(app, ["calib", str(small_onnx), str(calib_dir), "-o", str(tmp_path / "x.onnx"), "--num", "4",
                              "--keep-float", "middle"])
    assert res.exit_code != 0 and "--keep-float" in res.output


def test_head_inputs_are_what_the_classifier_reads(small_onnx, tmp_path):
    """Entropy/percentile leave these unclipped: the classifier's input and the last convolutions' inputs."""
    from clsx.calib.quantize import head_inputs, prepare

    prepared = prepare(small_onnx, tmp_path / "prepared.onnx")
    graph = onnx.load(str(prepared)).graph
    weighted = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    head = head_inputs(prepared)
    assert weighted[-1].input[0] in head and weighted[-2].input[0] in head
    assert weighted[0].input[0] not in head and len(head) <= 4


def test_graph_problem_detector_can_fail(small_onnx, photo_split, tmp_path):
    """ORT's default (asymmetric, int32 bias) settings must be flagged: the check above is not vacuous."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from clsx.calib.reader import OrtCalibrationReader

    stream = BatchStream(sorted(photo_split[0].iterdir())[:4], PreprocessSpec(input_size=(3, 64, 64), resize_size=73), 4)
    quantize_static(str(small_onnx), str(tmp_path / "default.onnx"), OrtCalibrationReader(stream, "input"),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    problems = graph_problems(tmp_path / "default.onnx")
    assert any("zero point" in p for p in problems) and any("int32" in p for p in problems)


def test_cache_skips_calibration_and_refuses_other_graphs(small_onnx, lite0_onnx, photo_split, tmp_path):
    calib_dir, _ = photo_split
    cache = tmp_path / "r18.calib.json"
    first = calibrate(small_onnx, calib_dir, tmp_path / "a.onnx", num=8, batch=4, method="entropy", cache=cache)
    assert cache.exists() and not first.used_cache
    second = calibrate(small_onnx, calib_dir, tmp_path / "b.onnx", num=8, batch=4, method="entropy", cache=cache)
    assert second.used_cache
    scales = lambda p: sorted(float(numpy_helper.to_array(t).sum()) for t in onnx.load(str(p)).graph.initializer if t.name.endswith("_scale"))
    assert scales(first.path) == scales(second.path)
    corrected = lambda p: read_metadata(p)["calibration"]["bias_corrected_layers"]  # noqa: E731
    assert corrected(first.path) == corrected(second.path) > 0, "the cache must carry the bias-correction means"
    res = runner.invoke(app, ["calib", str(lite0_onnx), str(calib_dir), "-o", str(tmp_path / "c.onnx"), "--cache", str(cache), "--method", "entropy"])
    assert res.exit_code == 1 and "another graph" in res.stderr
    assert not (tmp_path / "c.onnx").exists()
    res = runner.invoke(app, ["calib", str(small_onnx), str(calib_dir), "-o", str(tmp_path / "d.onnx"), "--cache", str(cache)])
    assert res.exit_code == 1 and "entropy ranges" in res.stderr
    res = runner.invoke(app, ["calib", str(small_onnx), str(calib_dir), "-o", str(tmp_path / "e.onnx"), "--cache", str(cache),
                              "--method", "entropy", "--for", "cpu"])
    assert res.exit_code == 1 and "tensorrt layout" in res.stderr


def test_split_is_seeded_disjoint_and_bounded(photo_split, tmp_path):
    calib_dir, eval_dir = photo_split
    a = split_images(calib_dir, 10, seed=3)
    b = split_images(calib_dir, 10, seed=3)
    c = split_images(calib_dir, 10, seed=4)
    assert a == b and a != c
    assert not set(a.calibration) & set(a.evaluation) and len(a.calibration) == 10
    d = split_images(calib_dir, 5, eval_dir=eval_dir)
    assert all(p.parent == eval_dir for p in d.evaluation) and len(d.calibration) == 5


def test_reader_skips_and_counts_bad_files(tmp_path, photo):
    Image.open(photo["coffee"]).convert("RGB").save(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    stream = BatchStream(sorted(tmp_path.iterdir()), PreprocessSpec(), batch_size=2)
    batches = list(stream)
    assert [b.shape for b in batches] == [(1, 3, 224, 224)]
    assert len(stream.bad) == 2 and stream.good == [tmp_path / "good.jpg"]


def test_bad_input(small_onnx, photo_split, tmp_path, caplog):
    calib_dir, _ = photo_split
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationDataError, match="no image files"):
        calibrate(small_onnx, empty, tmp_path / "x.onnx")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for i in range(6):
        (corrupt / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(CalibrationDataError, match="could be decoded"):
        calibrate(small_onnx, corrupt, tmp_path / "y.onnx")
    assert not (tmp_path / "y.onnx").exists()
    (tmp_path / "exists.onnx").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        calibrate(small_onnx, calib_dir, tmp_path / "exists.onnx")
    assert (tmp_path / "exists.onnx").read_bytes() == b"keep me"
    with caplog.at_level("WARNING"):
        res = calibrate(small_onnx, calib_dir, tmp_path / "few.onnx", num=1000, batch=16)
    assert "using" in caplog.text and res.calibration_images < 1000
    with pytest.raises(Exception, match="already quantized"):
        calibrate(res.path, calib_dir, tmp_path / "twice.onnx")


def test_onnx_without_metadata_needs_preprocessing_flags(small_onnx, photo_split, tmp_path):
    model = onnx.load(str(small_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    calib_dir, _ = photo_split
    res = runner.invoke(app, ["calib", str(tmp_path / "bare.onnx"), str(calib_dir), "--num", "4"])
    assert res.exit_code == 1 and "--input-size, --mean, --std" in res.stderr
    with pytest.raises(SpecError):
        calibrate(tmp_path / "bare.onnx", calib_dir, num=4)
    res = runner.invoke(app, ["calib", str(tmp_path / "bare.onnx"), str(calib_dir), "--num", "4", "--input-size", "64",
                              "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().endswith("bare.int8.onnx")


def test_real_weights_int8_agreement_and_gate(lite0_onnx, photos, tmp_path):
    """efficientnet-lite0 (real ImageNet weights): calibrate on views of one half of the photos, gate on
    views of the DISJOINT other half. ``min_top1=0.85`` keeps the most sensitive layers in float until
    the 95 % lower bound of the held-out top-1 agreement reaches 85 %; the FP32 top-1 stays within the INT8 top-5."""
    from clsx.zoo import samples

    calib_dir, eval_dir = tmp_path / "calib", tmp_path / "eval"
    samples.write_photo_variants(calib_dir, photos[1::2], per_photo=4, seed=5)
    samples.write_photo_variants(eval_dir, photos[0::2], per_photo=8, seed=6)
    cache = tmp_path / "lite0.calib.json"
    res = calibrate(lite0_onnx, calib_dir, tmp_path / "lite0.int8.onnx", num=64, batch=16, eval_dir=eval_dir, min_top1=0.85, cache=cache)
    assert res.after.images == min(64, len(list(eval_dir.iterdir())))
    assert res.after.top1_low >= 0.85 and res.after.ref_top1_in_topk == 1.0
    assert res.before.top1_low >= 0.85 or res.float_layers, "below the gate, layers must have been kept in float"
    cal = read_metadata(res.path)["calibration"]
    assert cal["top1_agreement"] == res.after.top1 and cal["fp32_top1_in_int8_top5"] == 1.0
    assert cal["eval_images"] == res.after.images and cal["top1_agreement_ci95"] == list(res.after.top1_interval)
    assert cal["top1_agreement_count"] == round(res.after.top1 * res.after.images)
    assert cal["top1_agreement_all_int8"] == res.before.top1 and cal["float_layers"] == res.float_layers

    # an unreachable gate: exit status 3, the graph kept under a name that says it failed
    from clsx.core.errors import GateFailedError

    with pytest.raises(GateFailedError, match="below --min-top1") as err:
        calibrate(lite0_onnx, calib_dir, tmp_path / "gate.onnx", num=64, batch=16, eval_dir=eval_dir, cache=cache,
                  min_top1=1.0, max_float_layers=1)
    assert err.value.exit_code == 3
    assert not (tmp_path / "gate.onnx").exists() and (tmp_path / "gate.FAILED.onnx").exists()
    failed = read_metadata(tmp_path / "gate.FAILED.onnx")["calibration"]
    assert len(failed["float_layers"]) == 1 and failed["min_top1"] == 1.0 and failed["top1_agreement"] < 1.0


def test_cpu_layout_runs_fused_on_onnx_runtime_and_tensorrt_refuses_it(small_onnx, photo_split, tmp_path):
    """--for cpu: asymmetric uint8 activations with ReLU folded -> ONNX Runtime fuses every conv into QLinearConv."""
    import onnxruntime as ort

    from clsx.core.errors import ClsxError
    from clsx.exporter.engine import build_engine

    calib_dir, _ = photo_split
    res = calibrate(small_onnx, calib_dir, tmp_path / "r18.cpu.int8.onnx", num=16, batch=8, target="cpu")
    assert read_metadata(res.path)["calibration"]["target"] == "cpu"
    assert graph_problems(res.path), "the cpu layout is not TensorRT's: the detector must say so"
    assert _logits_stay_float(res.path), "--for cpu must not quantize the logits"
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    sess = ort.InferenceSession(str(res.path), opts, providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((2, 3, 64, 64), np.float32)})[0].shape == (2, 10)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    convs = sum(op == "Conv" for op in onnx.load(str(small_onnx)).graph.node for op in [op.op_type])
    assert ops.count("QLinearConv") == convs and "Relu" not in ops
    with pytest.raises(ClsxError, match="--for tensorrt"):
        build_engine(res.path, target="rtx")
    with pytest.raises(Exception, match="reduce-range"):
        calibrate(small_onnx, calib_dir, tmp_path / "x.onnx", num=4, reduce_range=True)


def test_bias_correction_matches_the_mean_output_shift(tmp_path):
    """The correction equals the measured mean output shift that rounding a depthwise conv's weights causes."""
    from onnx import TensorProto, helper

    from clsx.calib.bias_correction import apply_shifts, weight_shifts

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((4, 1, 3, 3)) * np.array([5, 0.5, 0.05, 1]).reshape(4, 1, 1, 1)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    scale = np.abs(w).reshape(4, -1).max(1) / 127
    wq = np.clip(np.round(w / scale.reshape(4, 1, 1, 1)), -127, 127).astype(np.int8)
    def graph(weight_inputs, nodes, inits):
        conv = helper.make_node("Conv", ["x", weight_inputs, "b"], ["y"], name="dw", group=4, pads=[1, 1, 1, 1])
        return helper.make_model(helper.make_graph(nodes + [conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 8, 8])],
                                                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                                   inits + [numpy_helper.from_array(b, "b")]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(graph("w", [], [numpy_helper.from_array(w, "w")]), str(tmp_path / "float.onnx"))
    dq = helper.make_node("DequantizeLinear", ["wq", "ws"], ["wdq"], axis=0)
    onnx.save(graph("wdq", [dq], [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(scale.astype(np.float32), "ws")]), str(tmp_path / "q.onnx"))
    x = (rng.random((16, 4, 8, 8)) * np.array([1, 3, 0.1, 2]).reshape(1, 4, 1, 1) + 0.5).astype(np.float32)
    means = {"x": x.mean(axis=(0, 2, 3))}
    shifts = weight_shifts(tmp_path / "float.onnx", tmp_path / "q.onnx", means)
    import onnxruntime as ort

    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    measured = (run(tmp_path / "q.onnx") - run(tmp_path / "float.onnx"))[:, :, 1:-1, 1:-1].mean(axis=(0, 2, 3))  # away from padding
    assert np.abs(measured).max() > 1e-3, "the rounding must shift the mean, or the test is vacuous"
    assert np.allclose(shifts["dw"], measured, rtol=0.05, atol=1e-5)  # E[x] over the image vs over the interior
    fixed = apply_shifts(tmp_path / "float.onnx", shifts, tmp_path / "fixed.onnx")
    bias = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(fixed)).graph.initializer}
    assert np.allclose(bias["dw__bias_corrected"], b - shifts["dw"])


def test_sensitivity_ranks_a_damaged_layer_first(small_onnx, photo_split, tmp_path):
    """Coarsen one layer's weight quantization 20x: the ranking must put that layer first."""
    from clsx.calib.quantize import QuantConfig, prepare, quantizable_nodes, quantize
    from clsx.calib.sensitivity import rank_layers

    calib_dir, _ = photo_split
    res = calibrate(small_onnx, calib_dir, tmp_path / "r18.int8.onnx", num=8, batch=4, keep_float="none", keep_sensitive=0)
    prepared = prepare(small_onnx, tmp_path / "prepared.onnx")
    candidates = quantizable_nodes(prepared)
    assert len(candidates) == 21  # resnet18: 20 convs + fc
    victim = candidates[len(candidates) // 2]
    model = onnx.load(str(res.path))
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.name == victim)
    dq = producer[node.input[1]]
    wq, sc = numpy_helper.to_array(inits[dq.input[0]]), numpy_helper.to_array(inits[dq.input[1]])
    inits[dq.input[0]].CopyFrom(numpy_helper.from_array((np.round(wq / 20) * 20).clip(-127, 127).astype(np.int8), dq.input[0]))
    onnx.save(model, str(tmp_path / "damaged.onnx"))
    batch = next(iter(BatchStream(sorted(calib_dir.iterdir())[:8], PreprocessSpec(input_size=(3, 64, 64), resize_size=73), 8)))
    ranked = rank_layers(prepared, tmp_path / "damaged.onnx", [batch], "input", candidates)
    assert [n for n, _ in ranked][0] == victim and len(ranked) == len(candidates)
    assert ranked == sorted(ranked, key=lambda r: (r[1], r[0]))


def test_cli_cpu_layout_into_a_new_folder_logs_each_line_once(small_onnx, photo_split, tmp_path):
    """``clsx calib --for cpu -o out/new/`` in a fresh process where ONNX Runtime's matmul_nbits_quantizer
    is imported (it calls logging.basicConfig(level=INFO) on import; some ONNX Runtime versions import it
    while quantizing), which used to print every clsx line a second time."""
    import shutil
    import subprocess
    import sys

    calib_dir, eval_dir = photo_split
    shutil.copy(small_onnx, tmp_path / "r18.onnx")
    code = "import onnxruntime.quantization.matmul_nbits_quantizer\nfrom clsx.cli import main\nmain()"
    res = subprocess.run([sys.executable, "-c", code, "calib", "r18.onnx", str(calib_dir), "-o", "out/new/",
                          "--for", "cpu", "--num", "4", "--batch", "4", "--eval-dir", str(eval_dir), "--eval-num", "4"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "out/new/r18.int8.onnx"  # into the folder, created; printed as given
    assert sorted(p.name for p in (tmp_path / "out" / "new").iterdir()) == ["r18.int8.onnx", "r18.int8.onnx.json"]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    clsx_lines = [line for line in lines if line.startswith("clsx: ")]
    assert clsx_lines and any("wrote out/new/r18.int8.onnx" in line for line in clsx_lines)
    assert not [line for line in lines if "clsx.calib" in line or "INFO" in line], res.stderr


def test_default_split_keeps_every_view_of_a_photo_on_one_side(photo_split, caplog):
    """The held-out split is by source photo: never views of one photo on both sides; a short sample says why."""
    from clsx.calib.reader import USEFUL_CALIBRATION_IMAGES, source_of

    calib_dir, _ = photo_split
    for seed in range(3):
        split = split_images(calib_dir, 512, seed=seed)
        held = {source_of(p) for p in split.evaluation}
        assert held and not held & {source_of(p) for p in split.calibration}
    assert source_of(calib_dir / "coffee_03.jpg") == source_of(calib_dir / "coffee_00.jpg") != source_of(calib_dir / "chelsea_00.jpg")
    assert "held out for evaluation" in caplog.text and "asked for 512" in caplog.text
    split.warn_if_small()
    assert f"below {USEFUL_CALIBRATION_IMAGES}" in caplog.text


def test_agreement_reports_n_and_a_wilson_interval():
    from clsx.core.agreement import compare

    ref = np.eye(10)[np.arange(24) % 10]
    cand = ref.copy()
    cand[0] = np.roll(cand[0], 1)  # one flip in 24
    a = compare(ref, cand)
    assert a.top1_count == 23 and a.images == 24
    low, high = a.top1_interval
    assert 0.78 < low < 0.80 and high > 0.99, (low, high)  # 23/24 = 95.8 % is only known to be above ~79 %
    assert "23/24" in a.describe_top1() and a.to_dict()["top1_ci95"] == [low, high]


def test_split_warns_when_one_name_covers_many_images(tmp_path, photo, caplog):
    """frame_01.jpg ... frame_24.jpg count as views of one photo: the split says so instead of guessing."""
    data = photo["coffee"].read_bytes()
    for i in range(24):
        (tmp_path / f"frame_{i:02d}.png").write_bytes(data)
    for i in range(6):
        (tmp_path / f"other{i}.png").write_bytes(data)
    split = split_images(tmp_path, 512)
    assert "count as views of one source photo 'frame'" in caplog.text
    frames = [any(p.stem.startswith("frame") for p in side) for side in (split.calibration, split.evaluation)]
    assert frames != [True, True], "one source is never on both sides"


def test_keep_sensitive_keeps_the_most_damaging_layers_float(small_onnx, photo_split, tmp_path, caplog):
    """--keep-sensitive N: the N layers whose INT8 alone lowers the logits' SQNR most (ranked on calibration
    images) stay float beside --keep-float's; the log names them, most damaging first; the metadata records it."""
    import logging
    import re

    calib_dir, _ = photo_split
    cache = tmp_path / "r18.calib.json"
    plain = calibrate(small_onnx, calib_dir, tmp_path / "plain.onnx", num=8, batch=4, cache=cache, keep_sensitive=0)
    with caplog.at_level(logging.INFO, logger="clsx"):
        res = calibrate(small_onnx, calib_dir, tmp_path / "sens.onnx", num=8, batch=4, cache=cache)  # the default
    cal = read_metadata(res.path)["calibration"]
    classifier = read_metadata(plain.path)["calibration"]["kept_float_layers"]
    kept = cal["kept_float_layers"]
    # the default for tensorrt is 4, capped at one in eight of resnet18's 20 quantizable layers: 2
    assert cal["keep_sensitive"] == 4 and kept[:1] == classifier and len(set(kept)) == 3
    assert _int8_weighted(res.path) == _int8_weighted(plain.path) - set(kept[1:])
    line = next(r.getMessage() for r in caplog.records if "most sensitive" in r.getMessage())
    named = re.findall(r"(\S+) (-?[\d.]+)(?:,|$)", line.split(": ", 1)[1])
    assert [n for n, _ in named] == kept[1:] and float(named[0][1]) <= float(named[1][1]), line
    with pytest.raises(SpecError):
        calibrate(small_onnx, calib_dir, tmp_path / "bad.onnx", num=8, batch=4, cache=cache, keep_sensitive=-1)
    assert CalibOptions(target="cpu").sensitive_layers == 0 and CalibOptions().sensitive_layers == 4


def test_layers_kept_float_in_the_cpu_layout_read_the_folded_activation(small_onnx, photo_split, tmp_path):
    """ONNX Runtime's cpu layout folds a Relu that follows a quantized node into the uint8 pair's range; a layer
    kept float in the middle read the tensor before the pair, without its ReLU (output SQNR 34 -> 10 dB on this
    resnet18). It reads it through a Clip to the pair's range: as close to FP32 as the all-INT8 graph, or closer."""
    import onnxruntime as ort

    from clsx.calib.sensitivity import output_sqnr

    calib_dir, eval_dir = photo_split
    cache = tmp_path / "cpu.calib.json"
    plain = calibrate(small_onnx, calib_dir, tmp_path / "plain.onnx", num=16, batch=8, target="cpu", cache=cache)
    kept = calibrate(small_onnx, calib_dir, tmp_path / "kept.onnx", num=16, batch=8, target="cpu", cache=cache,
                     keep_sensitive=2)
    assert len(read_metadata(kept.path)["calibration"]["kept_float_layers"]) == 3  # the classifier and 2 middle layers
    assert any(n.op_type == "Clip" and n.name.endswith("__clsx_float_range") for n in onnx.load(str(kept.path)).graph.node)
    spec = clsx.open(small_onnx, backend="onnxrt").spec.preprocess
    x = np.concatenate(list(BatchStream(sorted(eval_dir.iterdir()), spec, 8)))

    def logits(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    ref = logits(small_onnx)
    assert output_sqnr(ref, logits(kept.path)) >= output_sqnr(ref, logits(plain.path)) - 1.0
