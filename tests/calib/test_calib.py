"""INT8 calibration: TensorRT-friendly Q/DQ graphs, the reader, the cache, bad input, and the accuracy gate."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

from clsx.calib import calibrate
from clsx.calib.quantize import graph_problems
from clsx.calib.reader import BatchStream, CalibrationDataError, split_images
from clsx.cli import app
from clsx.errors import OutputExistsError, SpecError
from clsx.metadata import read_metadata
from clsx.spec import PreprocessSpec

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


def test_qdq_graph_is_what_tensorrt_accepts(small_onnx, photo_split, tmp_path):
    calib_dir, _ = photo_split
    res = calibrate(small_onnx, calib_dir, tmp_path / "r18.int8.onnx", num=16, batch=8)
    q, dq, zps, int32_dq, per_channel = _qdq_stats(res.path)
    assert q and dq, "no Q/DQ nodes were inserted"
    assert all(np.all(z == 0) for z in zps), "activations/weights must be symmetric (zero point 0)"
    assert all(z.dtype == np.int8 for z in zps)
    assert not int32_dq, "biases must stay float (TensorRT rejects int32-bias DequantizeLinear)"
    assert per_channel, "weights must be quantized per channel"
    assert graph_problems(res.path) == []
    doc = read_metadata(res.path)
    assert doc["precision"] == "int8" and doc["calibration"]["method"] == "minmax"
    assert doc["parent_sha256"] != read_metadata(small_onnx).get("parent_sha256")
    assert json.loads((tmp_path / "r18.int8.onnx.json").read_text()) == doc
    import onnxruntime as ort

    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((3, 3, 64, 64), np.float32)})[0]
    assert out.shape == (3, 10)


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
    res = runner.invoke(app, ["calib", str(lite0_onnx), str(calib_dir), "-o", str(tmp_path / "c.onnx"), "--cache", str(cache), "--method", "entropy"])
    assert res.exit_code == 1 and "another graph" in res.stderr
    assert not (tmp_path / "c.onnx").exists()
    res = runner.invoke(app, ["calib", str(small_onnx), str(calib_dir), "-o", str(tmp_path / "d.onnx"), "--cache", str(cache)])
    assert res.exit_code == 1 and "entropy ranges" in res.stderr


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


def test_real_weights_int8_agreement_and_gate(lite0_onnx, photo_split, tmp_path):
    """efficientnet-lite0 (real ImageNet weights): calibrate on one set of photos, evaluate on views of
    DISJOINT source photos. The FP32 top-1 must stay within the INT8 top-5; top-1 agreement is
    measured and reported in the metadata. An unreachable gate exits 3 and names the file as failed."""
    from clsx.errors import GateFailedError

    calib_dir, eval_dir = photo_split
    res = calibrate(lite0_onnx, calib_dir, tmp_path / "lite0.int8.onnx", num=64, batch=16, eval_dir=eval_dir)
    assert res.after.images == len(list(eval_dir.iterdir()))
    assert res.after.ref_top1_in_topk == 1.0
    assert res.after.top1 >= 0.85
    cal = read_metadata(res.path)["calibration"]
    assert cal["top1_agreement"] == res.after.top1 and cal["fp32_top1_in_int8_top5"] == 1.0

    with pytest.raises(GateFailedError, match="below --min-top1") as err:
        calibrate(lite0_onnx, calib_dir, tmp_path / "gate.onnx", num=64, batch=16, eval_dir=eval_dir,
                  cache=None, min_top1=1.0, max_float_layers=2)
    assert err.value.exit_code == 3
    assert not (tmp_path / "gate.onnx").exists() and (tmp_path / "gate.FAILED.onnx").exists()
    failed = read_metadata(tmp_path / "gate.FAILED.onnx")["calibration"]
    assert len(failed["float_layers"]) == 2 and failed["min_top1"] == 1.0
