"""INT8 explicit quantization with ONNX Runtime, in the form TensorRT's ONNX parser accepts.

Calibration (collect -> compute ranges) is kept separate from quantization (ranges -> Q/DQ graph),
as in ONNX Runtime's own design, so ranges can be cached and quantization repeated cheaply, e.g.
with sensitive layers excluded. Settings (DESIGN.md): QDQ format, QInt8 activations and weights,
symmetric (zero points are 0), per-channel weights, a dedicated Q/DQ pair per consumer, biases left
in float (TensorRT rejects int32-bias DequantizeLinear).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clsx._optional import require
from clsx.errors import ClsxError

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")


class QuantizationError(ClsxError):
    """The graph cannot be quantized as asked."""


@dataclass(frozen=True)
class QuantConfig:
    """Typed front of ONNX Runtime's ``quantize_static`` arguments and ``extra_options``."""

    method: str = "minmax"
    per_channel: bool = True
    activation_symmetric: bool = True
    weight_symmetric: bool = True
    dedicated_qdq_pair: bool = True
    quantize_bias: bool = False
    percentile: float = 99.999
    #: batches fed to the calibrator before it reduces what it has collected (bounds memory)
    batches_per_chunk: int = 4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizationError(f"calibration method must be one of {', '.join(METHODS)}; got {self.method!r}")

    def ort_method(self):
        q = require("onnxruntime.quantization", purpose="INT8 calibration")
        return {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                "percentile": q.CalibrationMethod.Percentile}[self.method]

    def calibrator_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"symmetric": self.activation_symmetric}
        if self.method == "percentile":
            opts["percentile"] = self.percentile
        return opts

    def extra_options(self) -> dict[str, Any]:
        return {
            "ActivationSymmetric": self.activation_symmetric,
            "WeightSymmetric": self.weight_symmetric,
            "DedicatedQDQPair": self.dedicated_qdq_pair,
            "QuantizeBias": self.quantize_bias,
            # ORT otherwise coarsens some weight scales (up to ~10x on depthwise convs) so that an
            # int32 bias *could* be represented; biases stay float here, so that only costs accuracy.
            "QDQDisableWeightAdjustForInt32Bias": not self.quantize_bias,
        }


def check_quantizable(model_path: Path) -> None:
    """Refuse graphs that are already quantized or not FP32."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    already = sorted(ops & set(QUANTIZED_OPS))
    if already:
        raise QuantizationError(f"{model_path} is already quantized (it has {', '.join(already)} nodes); calibrate the FP32 graph")
    fp16 = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    if fp16:
        raise QuantizationError(f"{model_path} holds FP16 weights; calibrate the FP32 graph, not the FP16 one")


def prepare(model_path: Path, out: Path) -> Path:
    """ONNX Runtime's ``quant_pre_process`` (shape inference + graph optimization), then unique node names
    (nodes_to_exclude refers to nodes by name)."""
    import onnx

    q = require("onnxruntime.quantization", purpose="INT8 calibration")
    q.quant_pre_process(str(model_path), str(out), skip_symbolic_shape=False)
    model = onnx.load(str(out))
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    _dedicate_parameter_constants(model)
    onnx.save(model, str(out))
    return out


# Inputs that are parameters, not data: Clip's bounds, Pad's pads and fill value.
_PARAMETER_INPUTS = {"Clip": (1, 2), "Pad": (1, 2, 3)}


def _dedicate_parameter_constants(model) -> None:
    """Give each Clip bound / Pad parameter its own initializer.

    Exporters share one scalar initializer (e.g. 0.0) between Pad's fill value and every ReLU6's
    lower bound. ONNX Runtime's quantizer then quantizes it as an activation (Pad is quantizable) and
    rewires every Clip to read the bound through a DequantizeLinear; ONNX Runtime's own Clip/Quantize
    fusion no longer sees the lower bound of 0 and drops the ReLU6 wherever the graph keeps that layer
    in float, letting negative activations through (measured: 15 -> 10 dB output SQNR on
    efficientnet-lite0 with one layer kept in float). Dedicated copies keep the bounds constant.
    """
    import onnx

    inits = {t.name: t for t in model.graph.initializer}
    users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    for node in model.graph.node:
        for idx in _PARAMETER_INPUTS.get(node.op_type, ()):
            if idx < len(node.input) and node.input[idx] in inits and users[node.input[idx]] > 1:
                src = inits[node.input[idx]]
                copy = onnx.TensorProto()
                copy.CopyFrom(src)
                copy.name = f"{src.name}__{node.name}_{idx}"
                model.graph.initializer.append(copy)
                node.input[idx] = copy.name


def collect_ranges(prepared: Path, reader, config: QuantConfig, workdir: Path):
    """Run the calibrator over ``reader`` a few batches at a time; return ONNX Runtime's TensorsData.

    ``reader`` is a clsx.calib.reader.OrtCalibrationReader. Feeding the calibrator in chunks keeps its
    stored activations bounded: MinMax folds them into running ranges, the histogram methods (entropy,
    percentile) into running histograms, after each chunk.
    """
    cal = require("onnxruntime.quantization.calibrate", purpose="INT8 calibration")
    calibrator = cal.create_calibrator(
        prepared,
        None,
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=config.ort_method(),
        extra_options=config.calibrator_options(),
    )
    try:
        while not reader.exhausted:
            calibrator.collect_data(reader.chunk(config.batches_per_chunk))
    except ValueError as exc:
        if "No data is collected" in str(exc):
            raise QuantizationError("no calibration image could be decoded") from None
        raise
    return calibrator.compute_data()


def quantize(prepared: Path, out: Path, ranges_cache: Path, config: QuantConfig, *, exclude: Sequence[str] = ()) -> Path:
    """Write the Q/DQ graph for ``prepared`` using cached ranges (no calibration pass)."""
    q = require("onnxruntime.quantization", purpose="INT8 calibration")
    q.quantize_static(
        str(prepared),
        str(out),
        calibration_data_reader=None,
        quant_format=q.QuantFormat.QDQ,
        per_channel=config.per_channel,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        nodes_to_exclude=list(exclude) or None,
        calibrate_method=config.ort_method(),
        extra_options=config.extra_options(),
        calibration_cache_path=str(ranges_cache),
    )
    if exclude:
        _float_inputs_for(out, set(exclude))
    return out


def _float_inputs_for(path: Path, keep_float: set[str]) -> None:
    """Feed the nodes kept in float their float inputs, without the Q/DQ pair in front of them.

    ``nodes_to_exclude`` only stops ONNX Runtime's quantizer from quantizing a node's weights; an
    activation input still arrives through the Q/DQ pair of its (quantized) producer. ONNX Runtime's
    CPU optimizer then sees DequantizeLinear -> float Conv and quantizes that Conv's weights itself,
    per tensor (its WeightBiasQuantization rewrite): the layer meant to stay in float ends up worse
    than before (measured: 15 -> 10 dB output SQNR on efficientnet-lite0 for the stem convolution).
    Rewiring the node to the tensor before the pair makes "kept in float" true on every runtime.
    """
    import onnx

    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name not in keep_float:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    _prune_dangling(model)
    onnx.save(model, str(path))


def _prune_dangling(model) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads any more (repeat until stable)."""
    graph_outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | graph_outputs
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {i for n in model.graph.node for i in n.input}
    for init in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(init)


def quantizable_nodes(prepared: Path) -> list[str]:
    """Names of the compute nodes whose inputs get Q/DQ (the candidates for keeping in float)."""
    import onnx

    model = onnx.load(str(prepared), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose")]


def graph_problems(qdq_path: Path) -> list[str]:
    """What TensorRT's parser would reject: non-zero zero points, int32 DequantizeLinear (quantized bias)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq_path))
    inits = {t.name: t for t in model.graph.initializer}
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            if node.op_type == "DequantizeLinear" and node.input and node.input[0] in inits:
                if inits[node.input[0]].data_type == onnx.TensorProto.INT32:
                    problems.append(f"{node.name}: int32 DequantizeLinear (quantized bias)")
            continue
        zp = inits.get(node.input[2])
        if zp is not None and np.any(numpy_helper.to_array(zp) != 0):
            problems.append(f"{node.name}: non-zero zero point")
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and inits[node.input[0]].data_type == onnx.TensorProto.INT32:
            problems.append(f"{node.name}: int32 DequantizeLinear (quantized bias)")
    return problems

