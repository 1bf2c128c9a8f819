"""FP32 -> FP16 ONNX: FP32 I/O, overflow-prone parts kept FP32, verified against the FP32 graph."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from clsx.core.errors import GateFailedError, OutputExistsError
from clsx.exporter import ExportError, convert_fp16, export_onnx
from clsx.exporter import fp16 as fp16_mod
from clsx.exporter import verify
from clsx.core.metadata import MetadataError, read_metadata
from clsx.core.preprocess import preprocess
from clsx.core.spec import ModelSpec, PreprocessSpec
from clsx.zoo import LoadedModel


def _run(model_or_path, x):
    src = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_lite0_fp16_is_verified_against_fp32(lite0_exported, photo):
    res = lite0_exported
    assert res.path == res.fp16_path and res.path.name == "lite0.fp16.onnx" and res.fp32_path.name == "lite0.onnx"
    assert res.fp32_path.exists() and res.path.exists()
    doc = read_metadata(res.path)
    assert doc == res.metadata and doc["precision"] == "fp16"
    assert doc["parent_sha256"] == hashlib.sha256(res.fp32_path.read_bytes()).hexdigest()
    assert doc["inputs"][0]["dtype"] == "float32" and doc["outputs"][0]["dtype"] == "float32"
    assert doc["producer"]["exporter"] == "dynamo" and "onnxconverter-common" in doc["producer"]["fp16"]["converter"]
    v = doc["verification"]
    assert v["passed"] and v["reference"] == "onnx fp32" and v["agreement_gated"] is True
    assert v["top1"] >= 0.99 and v["rel_tolerance"] == verify.FP16_VS_FP32.rel
    model = onnx.load(str(res.path))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    big = [t for t in model.graph.initializer if np.prod(t.dims) >= 64]
    assert big and all(t.data_type == TensorProto.FLOAT16 for t in big)
    assert res.path.stat().st_size < 0.6 * res.fp32_path.stat().st_size
    x = preprocess(photo["coffee"], ModelSpec.from_dict(doc["model"]).preprocess)[None]
    assert int(_run(res.path, x).argmax()) == int(_run(res.fp32_path, x).argmax()) == 967  # espresso


def test_convert_fp16_from_a_file(resnet18_exported, tmp_path):
    dst = tmp_path / "r18.fp16.onnx"
    res = convert_fp16(resnet18_exported.path, dst, verify_photos=3)
    assert res.path == dst and res.fp32_path == resnet18_exported.path and res.exporter == "dynamo"
    assert res.verification["passed"] and res.verification["agreement_gated"] is False
    assert res.metadata["parent_sha256"] == resnet18_exported.sha256
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    a, b = _run(resnet18_exported.path, x), _run(dst, x)
    assert np.abs(a - b).max() <= verify.FP16_VS_FP32.rel * np.abs(a).max()
    with pytest.raises(OutputExistsError):
        convert_fp16(resnet18_exported.path, dst)


def test_convert_fp16_refuses_unsuitable_sources(resnet18_exported, tmp_path):
    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(resnet18_exported.path))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    with pytest.raises(MetadataError, match="no clsx metadata"):
        convert_fp16(bare)
    res = convert_fp16(resnet18_exported.path, tmp_path / "a.fp16.onnx", verify=False)
    with pytest.raises(ExportError, match="fp16 graph"):
        convert_fp16(res.path, tmp_path / "b.fp16.onnx")
    with pytest.raises(MetadataError, match="no such file"):
        convert_fp16(tmp_path / "missing.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fp16.onnx", "a.fp16.onnx.json", "bare.onnx"]


def test_fp16_gate_failure_keeps_failed_file(resnet18_exported, tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "FP16_VS_FP32", verify.Tolerance(rel=1e-9, min_top1=1.0))
    with pytest.raises(GateFailedError, match=r"r18\.fp16\.FAILED\.onnx") as err:
        convert_fp16(resnet18_exported.path, tmp_path / "r18.fp16.onnx", verify_photos=3)
    assert err.value.exit_code == 3 and "would need rel" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r18.fp16.FAILED.onnx", "r18.fp16.FAILED.onnx.json"]


# ---------------------------------------------------------------------------------------------
# what stays FP32


class Hot(nn.Module):
    """A conv whose activations reach ~1e5 (beyond FP16's 65504), scaled back down by the head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.fill_(1e4)
            self.conv.bias.zero_()
            self.head.weight.copy_(torch.linspace(-1e-4, 2e-4, 12).reshape(3, 4))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_activation_range_keeps_overflowing_nodes_fp32(tmp_path):
    spec = ModelSpec(name="hot", source="custom", num_classes=3, preprocess=PreprocessSpec(input_size=(3, 16, 16), resize_size=18))
    res = export_onnx(LoadedModel(Hot().eval(), spec), tmp_path / "hot.onnx", fp16=True, verify_photos=3)
    report = res.metadata["producer"]["fp16"]
    assert report["nodes_fp32_by_range"], report  # the conv and what follows it
    assert res.verification["passed"]
    fp32 = onnx.load(str(res.fp32_path))
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)
    guarded, _ = fp16_mod.to_fp16(fp32, x)
    naive, naive_report = fp16_mod.to_fp16(fp32, x, limit=float("inf"))
    assert naive_report["nodes_fp32_by_range"] == []
    ref = _run(fp32, x)
    assert np.allclose(_run(guarded, x), ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())
    # ORT's CPU provider runs FP16 convs through FP32 kernels, so the overflow the guard prevents only
    # shows on a GPU; check the types instead: the conv's output would be FP16 while it reaches > 65504
    assert fp16_mod.activation_ranges(fp32, x, None, False)[_conv_output(fp32)] > fp16_mod.FP16_MAX
    assert _elem_type(naive, _conv_output(naive)) == TensorProto.FLOAT16
    assert _elem_type(guarded, _conv_output(guarded)) == TensorProto.FLOAT


def _conv_output(model: onnx.ModelProto) -> str:
    return next(n.output[0] for n in model.graph.node if n.op_type == "Conv")


def _elem_type(model: onnx.ModelProto, name: str) -> int:
    inferred = onnx.shape_inference.infer_shapes(model)
    return next(vi.type.tensor_type.elem_type for vi in inferred.graph.value_info if vi.name == name)


def _graph_with_converter_traps() -> onnx.ModelProto:
    """MatMul -> Softmax (kept FP32 by op type) -> Cast(float->float) -> Mul(two) -> Div(float(Shape))
    -> Pow(two) (kept FP32) -> Add: a no-op Cast right after a kept-FP32 node, an int->float Cast
    feeding the FP16 region, and a constant shared by an FP32 and an FP16 node."""
    w = numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4), "w")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    bias = numpy_helper.from_array(np.full(4, 0.5, np.float32), "bias")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Softmax", ["h"], ["s"], axis=-1),
        helper.make_node("Cast", ["s"], ["c"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["c", "two"], ["m"]),
        helper.make_node("Shape", ["x"], ["k"], start=1, end=2),
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["m", "kf"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["p"]),
        helper.make_node("Add", ["p", "bias"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "traps", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], [w, two, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def test_converter_traps_are_handled():
    model = _graph_with_converter_traps()
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    out, report = fp16_mod.to_fp16(model, x)
    onnx.checker.check_model(out)
    assert report["nodes_fp32_by_op"] == 2  # Softmax, Pow
    assert report["noop_casts_removed"] == 1 and report["casts_retargeted"] == 1
    kinds = {t.name: t.data_type for t in out.graph.initializer}
    assert kinds["w"] == TensorProto.FLOAT16 and kinds["two"] == TensorProto.FLOAT16 and kinds["two__fp32"] == TensorProto.FLOAT
    assert out.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert out.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    np.testing.assert_allclose(_run(out, x), _run(model, x), rtol=5e-3, atol=5e-3)


def test_output_of_a_kept_fp32_node_stays_float():
    """The converter leaves a float16 graph output when the last node is kept FP32; clsx adds the Cast."""
    w = numpy_helper.from_array(np.eye(3, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=-1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    out, report = fp16_mod.to_fp16(model, None)
    assert report["io_casts_added"] == 1  # onnxconverter-common 1.16 leaves the output float16 here
    assert out.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    y = _run(out, x)
    assert y.dtype == np.float32 and np.allclose(y, _run(model, x), atol=2e-3)


def test_weights_beyond_fp16_range_keep_their_node_fp32():
    big = numpy_helper.from_array(np.array([1e6], np.float32), "big")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "big"], ["y"], name="scale")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], [big],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    out, report = fp16_mod.to_fp16(model, None)
    assert report["nodes_fp32_by_weight_range"] == ["scale"]
    assert next(t for t in out.graph.initializer if t.name == "big").data_type == TensorProto.FLOAT
    x = np.full((2, 1), 0.01, np.float32)
    np.testing.assert_allclose(_run(out, x), x * 1e6, rtol=1e-6)
