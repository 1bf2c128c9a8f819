"""``clsx export --input uint8``: graphs that take pixels and normalize inside, on real photos with the
real lite0 weights: the export verifies against torch, ONNX Runtime gives the float graph's logits,
FP16 keeps the uint8 input, calibration feeds pixels and leaves the normalization unquantized, and
every reader (Runtime, Classifier) takes the format from the metadata."""

from __future__ import annotations

import numpy as np
import pytest

from clsx.core.spec import InputFormat

NHWC = InputFormat("uint8", "NHWC")
NCHW = InputFormat("uint8", "NCHW")


@pytest.fixture(scope="module")
def lite0_uint8(tmp_path_factory, lite0):
    """lite0 exported with uint8 NHWC input (+ FP16), verified against torch on all 17 photos."""
    from clsx.exporter import export_onnx

    return export_onnx(lite0, tmp_path_factory.mktemp("u8") / "lite0.onnx", fp16=True, input_format=NHWC)


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _nchw_uint8_copy(src, dst, spec):
    """The float graph rewritten to take NCHW pixels (the transform the exporter applies), with its
    metadata saying so."""
    import onnx

    from clsx.core.metadata import embed_in_onnx, read_metadata
    from clsx.core.pixel_input import add_pixel_input

    model = onnx.load(str(src))
    add_pixel_input(model, spec.preprocess, NCHW)
    doc = read_metadata(src)
    doc["inputs"] = [{**doc["inputs"][0], "dtype": "uint8", "layout": "NCHW"}]
    embed_in_onnx(model, doc)
    onnx.save(model, str(dst))
    return dst


def test_uint8_export_matches_the_float_export(lite0_uint8, lite0_onnx, lite0, photos):
    from clsx.core.metadata import read_metadata
    from clsx.core.preprocess import preprocess_batch

    res = lite0_uint8
    assert res.metadata["verification"]["passed"] and res.fp32_verification["passed"]  # vs torch, vs FP32
    for path in (res.fp32_path, res.fp16_path):
        inp = _session(path).get_inputs()[0]
        assert inp.type == "tensor(uint8)" and inp.shape == ["batch", 224, 224, 3], path.name
        assert read_metadata(path)["inputs"][0] == {"name": "input", "shape": ["batch", 224, 224, 3], "dtype": "uint8", "layout": "NHWC"}
    spec = lite0.spec.preprocess
    pixels = preprocess_batch(photos, spec, NHWC)
    floats = preprocess_batch(photos, spec)
    got = _session(res.fp32_path).run(None, {"input": pixels})[0]
    want = _session(lite0_onnx).run(None, {"input": floats})[0]
    assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).all()
    half = _session(res.fp16_path).run(None, {"input": pixels})[0]
    assert (half.argmax(1) == want.argmax(1)).mean() >= 16 / 17


def test_a_wrong_normalization_inside_would_be_seen(lite0_onnx, lite0, photos):
    """The comparison above can fail: pixels fed to a graph normalizing with another std differ."""
    import dataclasses

    import onnx

    from clsx.core.pixel_input import add_pixel_input
    from clsx.core.preprocess import preprocess_batch

    spec = lite0.spec.preprocess
    model = onnx.load(str(lite0_onnx))
    add_pixel_input(model, dataclasses.replace(spec, std=(0.25,) * 3), NHWC)
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": preprocess_batch(photos[:4], spec, NHWC)})[0]
    want = _session(lite0_onnx).run(None, {"input": preprocess_batch(photos[:4], spec)})[0]
    assert np.abs(got - want).max() > 0.5


def test_runtime_and_classifier_take_the_format_from_metadata(lite0_uint8, lite0_onnx, photos):
    import clsx
    from clsx.predict.classifier import Classifier

    with clsx.open(lite0_uint8.fp32_path, backend="onnxrt", device="cpu") as rt:
        assert rt.input_format == NHWC
        rt.run(np.zeros((1, 224, 224, 3), np.uint8))
        assert rt.input_format == NHWC  # still, with the session loaded
        with pytest.raises(clsx.ClsxError, match="uint8"):
            rt.run(np.zeros((1, 3, 224, 224), np.float32))
    a = Classifier(lite0_uint8.fp32_path, backend="onnxrt", device="cpu").predict(photos, topk=3)
    b = Classifier(lite0_onnx, backend="onnxrt", device="cpu").predict(photos, topk=3)
    assert [p.indices for p in a] == [p.indices for p in b]
    assert max(abs(x - y) for p, q in zip(a, b) for x, y in zip(p.probs, q.probs)) < 1e-4


def test_nchw_pixels_and_calibration_feed_pixels(tmp_path, lite0_onnx, lite0, photos):
    """An NCHW uint8 graph; INT8 calibration (ONNX Runtime CPU layout) feeds it pixels, keeps the
    normalization nodes float, and the INT8 graph still takes uint8 pixels."""
    import onnx

    from clsx.calib import calibrate
    from clsx.core.metadata import read_metadata
    from clsx.core.preprocess import preprocess_batch
    from clsx.zoo import samples

    graph = _nchw_uint8_copy(lite0_onnx, tmp_path / "lite0_nchw.onnx", lite0.spec)
    spec = lite0.spec.preprocess
    got = _session(graph).run(None, {"input": preprocess_batch(photos, spec, NCHW)})[0]
    want = _session(lite0_onnx).run(None, {"input": preprocess_batch(photos, spec)})[0]
    assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())

    images = tmp_path / "calib"
    samples.write_photo_variants(images, photos, per_photo=2, size=256)
    res = calibrate(graph, images, tmp_path / "int8.onnx", num=24, eval_num=8, target="cpu", bias_correction=False)
    int8 = onnx.load(str(res.path))
    pixel_nodes = [n for n in int8.graph.node if n.name.startswith("clsx_pixels/")]
    assert [n.op_type for n in pixel_nodes][:3] == ["Cast", "Mul", "Add"]
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] in ("input", "clsx_pixels/float")
                   for n in int8.graph.node)
    assert read_metadata(res.path)["inputs"][0]["dtype"] == "uint8"
    q = _session(res.path).run(None, {"input": preprocess_batch(photos, spec, NCHW)})[0]
    assert (q.argmax(1) == want.argmax(1)).mean() >= 0.8


def test_export_options_refuse_odd_formats():
    from clsx.core.errors import SpecError
    from clsx.exporter.chain import ExportOptions

    assert ExportOptions(input="uint8").input_format == NHWC
    assert ExportOptions(input="uint8", input_layout="NCHW").input_format == NCHW
    with pytest.raises(SpecError, match="needs --input uint8"):
        ExportOptions(input_layout="NHWC").input_format  # noqa: B018
    with pytest.raises(SpecError, match="float32 or uint8"):
        ExportOptions(input="float16").input_format  # noqa: B018
