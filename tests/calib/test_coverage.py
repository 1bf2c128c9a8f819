"""No silent no-op: graphs with shape arithmetic (timm's own TorchScript export) are quantized, and an
INT8 graph with fewer weighted layers quantized than asked is reported layer by layer."""

import onnx
import pytest
from typer.testing import CliRunner

from clsx.calib.quantize import QuantConfig, collect_ranges, prepare, quantize, shape_nodes, unquantized_layers
from clsx.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def timm_export(tmp_path_factory):
    """timm's ``onnx_export`` (TorchScript, dynamic "same" padding) of tf_efficientnet_lite0, random weights, 64 px."""
    import timm
    from timm.utils.onnx import onnx_export

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10).eval()
    out = tmp_path_factory.mktemp("timm-export") / "lite0_timm.onnx"
    onnx_export(model, str(out), input_size=(3, 64, 64), batch_size=1, check=False, opset=17)
    return out


def _weighted(graph):
    return [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]


def test_shape_arithmetic_is_only_the_subgraph_that_computes_shapes(timm_export, tmp_path):
    prepared = prepare(timm_export, tmp_path / "prepared.onnx")
    graph = onnx.load(str(prepared)).graph
    marked = shape_nodes(prepared)
    by_name = {n.name: n for n in graph.node}
    assert any(by_name[m].op_type == "Shape" for m in marked), "the export has dynamic padding: some shape arithmetic"
    assert not any(by_name[m].op_type in ("Conv", "Gemm", "Pad", "GlobalAveragePool") for m in marked)
    assert sum(by_name[m].op_type == "Clip" for m in marked) < sum(n.op_type == "Clip" for n in graph.node) // 2, \
        "ReLU6 activations are data, not shape arithmetic"
    for name in marked:  # everything marked feeds shapes only: never the graph output
        assert not set(by_name[name].output) & {o.name for o in graph.output}


def test_timm_onnx_export_is_quantized_layer_for_layer(timm_export, photo_split, tmp_path):
    calib_dir, _ = photo_split
    out = tmp_path / "lite0_timm.int8.onnx"
    res = runner.invoke(app, ["calib", str(timm_export), str(calib_dir), "-o", str(out), "--num", "8", "--batch", "4",
                              "--keep-float", "none", "--keep-sensitive", "0", "--input-size", "64", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"])
    assert res.exit_code == 0, res.output
    graph = onnx.load(str(out)).graph
    dq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    weighted = _weighted(graph)
    assert len(weighted) == 50
    assert all(n.input[1] in dq_out for n in weighted), "every Conv/Gemm weight goes through Q/DQ"


def test_unquantized_layers_are_named_with_a_reason(small_onnx, photo_split, tmp_path):
    """A layer left in float that was not asked for is found (the job turns this into exit 3)."""
    from clsx.calib.reader import BatchStream, OrtCalibrationReader, split_images
    from clsx.core.metadata import read_onnx_metadata, spec_of
    from onnxruntime.quantization.calibrate import save_tensors_data

    prepared = prepare(small_onnx, tmp_path / "prepared.onnx")
    spec = spec_of(read_onnx_metadata(small_onnx))
    calib_dir, _ = photo_split
    split = split_images(calib_dir, 4)
    name = onnx.load(str(prepared)).graph.input[0].name
    ranges, _ = collect_ranges(prepared, OrtCalibrationReader(BatchStream(split.calibration, spec.preprocess, 4), name),
                               QuantConfig(), tmp_path)
    save_tensors_data(ranges, tmp_path / "ranges.json")
    first = _weighted(onnx.load(str(prepared)).graph)[0].name
    int8 = quantize(prepared, tmp_path / "q.onnx", tmp_path / "ranges.json", QuantConfig(), exclude=[first])
    assert unquantized_layers(prepared, int8, kept_float=[first]) == {}
    assert unquantized_layers(prepared, int8) == {first: "ONNX Runtime's quantizer left it in float"}
