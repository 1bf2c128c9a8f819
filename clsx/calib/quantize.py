"""INT8 explicit quantization with ONNX Runtime: one calibration, two Q/DQ layouts.

Calibration (collect -> compute ranges) is kept separate from quantization (ranges -> Q/DQ graph),
as in ONNX Runtime's own design, so ranges can be cached and quantization repeated cheaply, e.g.
with sensitive layers excluded. Two layouts ("targets") of the same QDQ format:

- ``tensorrt`` (default): what TensorRT's explicit quantization wants (DESIGN.md) -- QInt8
  activations and weights, symmetric (zero points are 0), per-channel weights, a dedicated Q/DQ pair
  per consumer, biases left in float, and Q/DQ only on the inputs of weighted layers (Conv, Gemm,
  MatMul), never on their outputs: TensorRT fuses the activation, residual add and requantization
  itself, and quantizing pre-activation outputs symmetrically wastes half the range (measured on
  efficientnet-lite0: 15 dB output SQNR either way, but the weighted-input layout flips fewer
  top-1s and needs no Q/DQ around every ReLU6). The same graph runs on ONNX Runtime (CPU/GPU),
  but ONNX Runtime's CPU kernels cannot fuse a ReLU into a symmetric int8 requantization, so on
  CPU it is no faster than FP32. The few layers that feed another weighted layer directly get 7-bit
  weights: ONNX Runtime's CPU optimizer turns those into integer kernels (see integer_kernel_weights).
- ``cpu``: ONNX Runtime's CPU layout -- asymmetric QUInt8 activations (ReLU/Clip folded into the
  quantization range), symmetric per-channel QInt8 weights, int32 biases: every Conv/Add becomes
  a QLinear kernel (U8S8, VNNI). TensorRT rejects its non-zero zero points, so ``clsx build``
  refuses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clsx.calib import entropy
from clsx.core.errors import ClsxError
from clsx.core.files import describe_exception, first_line
from clsx.core.optional import require

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("tensorrt", "cpu")
#: layers whose inputs (activation and weight) carry Q/DQ in the TensorRT layout
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")


class QuantizationError(ClsxError):
    """The graph cannot be quantized as asked."""


@dataclass(frozen=True)
class QuantConfig:
    """Typed front of ONNX Runtime's ``quantize_static`` arguments and ``extra_options``."""

    method: str = "minmax"
    target: str = "tensorrt"
    per_channel: bool = True
    percentile: float = 99.999
    #: correct each layer's float bias for the mean shift its weight quantization causes
    bias_correction: bool = True
    #: 7-bit weights (cpu target): avoids the int16 saturation of ORT's U8S8 kernels on AVX2-only x86
    reduce_range: bool = False
    #: batches fed to the calibrator before it reduces what it has collected (bounds memory: the
    #: calibrator holds every calibrated activation of a chunk, ~0.5 GB per 16 images for resnet50)
    batches_per_chunk: int = 2
    #: entropy / percentile, tensorrt layout: the activations read by the classifier head keep their full range
    #: (max |x|): clipping is meant for the feature maps convolutions read, not the few features the logits come from
    head_max: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizationError(f"calibration method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.target not in TARGETS:
            raise QuantizationError(f"--for must be one of {', '.join(TARGETS)} (the INT8 layout); got {self.target!r}")
        if self.reduce_range and self.target != "cpu":
            raise QuantizationError("--reduce-range is for the cpu target (TensorRT wants full 8-bit weights)")

    @property
    def activation_symmetric(self) -> bool:
        return self.target == "tensorrt"

    def ort_method(self):
        q = require("onnxruntime.quantization", purpose="INT8 calibration")
        return {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                "percentile": q.CalibrationMethod.Percentile}[self.method]

    def calibrator_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"symmetric": self.activation_symmetric}
        if self.method == "percentile":
            opts["percentile"] = self.percentile
        return opts

    def quantize_kwargs(self) -> dict[str, Any]:
        """``quantize_static`` keyword arguments for this target (besides paths, ranges and exclusions)."""
        q = require("onnxruntime.quantization", purpose="INT8 calibration")
        if self.target == "tensorrt":
            return dict(
                activation_type=q.QuantType.QInt8,
                op_types_to_quantize=list(WEIGHTED_OPS),
                reduce_range=False,
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "DedicatedQDQPair": True,
                    "QuantizeBias": False,
                    "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS),
                    # ORT otherwise coarsens some weight scales (up to ~10x on depthwise convs) so that an
                    # int32 bias *could* be represented; biases stay float here, so that only costs accuracy.
                    "QDQDisableWeightAdjustForInt32Bias": True,
                },
            )
        return dict(
            activation_type=q.QuantType.QUInt8,
            op_types_to_quantize=None,
            reduce_range=self.reduce_range,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )


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
    try:
        q.quant_pre_process(str(model_path), str(out), skip_symbolic_shape=False)
    except Exception as exc:  # a graph it cannot take: an operator nobody registered, a broken shape ...
        raise QuantizationError(f"{model_path}: cannot prepare it for calibration ({_why_not_runnable(model_path) or describe_exception(exc)})") from None
    model = onnx.load(str(out))
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    _dedicate_parameter_constants(model)
    onnx.save(model, str(out))
    return out


def _why_not_runnable(model_path: Path) -> str | None:
    """ONNX Runtime's own reason for refusing the graph (the clearer one: "evil.ops:Frobnicate is not a
    registered function/op"), or None when it loads."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        return f"ONNX Runtime cannot load it: {first_line(exc)}"
    return None


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


def _calibrator(prepared: Path, config: QuantConfig, workdir: Path):
    """ONNX Runtime's calibrator for ``config.method``, watching only the tensors the layout quantizes.

    ONNX Runtime's factory watches every input *and output* of the listed op types; the TensorRT
    layout quantizes only the activation inputs of weighted layers, so the outputs (as large again)
    are dropped: half the memory and half the histogram work. Entropy keeps ONNX Runtime's collection
    but histograms absolute values and searches the threshold as TensorRT does (:mod:`clsx.calib.entropy`);
    every method sees every value of every watched tensor.
    """
    cal = require("onnxruntime.quantization.calibrate", purpose="INT8 calibration")
    base = {"minmax": cal.MinMaxCalibrater, "entropy": cal.EntropyCalibrater, "percentile": cal.PercentileCalibrater}[config.method]
    watched_ops = set(WEIGHTED_OPS) if config.target == "tensorrt" else None

    class Calibrator(base):  # type: ignore[misc, valid-type]
        def select_tensors_to_calibrate(self, model):
            tensors, value_infos = super().select_tensors_to_calibrate(model)
            if watched_ops is not None:
                inputs = {i for n in model.graph.node if n.op_type in watched_ops for i in n.input}
                tensors = {t for t in tensors if t in inputs}
            return tensors, value_infos

        def collect_data(self, data_reader):
            if config.method == "entropy" and self.collector is None:
                self.collector = _entropy_collector(cal, self.num_bins)
            super().collect_data(data_reader)

        def create_inference_session(self):
            # ONNX Runtime builds this session unoptimized; its extended fusions keep every graph output
            # (the watched tensors), so they are safe here and save time on every calibration batch.
            onnxruntime = require("onnxruntime", purpose="INT8 calibration")
            opts = onnxruntime.SessionOptions()
            opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.log_severity_level = 3
            self.infer_session = onnxruntime.InferenceSession(self.augmented_model_path, sess_options=opts,
                                                              providers=self.execution_providers)

    kwargs: dict[str, Any] = {"symmetric": config.activation_symmetric}
    if config.method == "entropy":
        kwargs.update(num_bins=entropy.HISTOGRAM_BINS)
    elif config.method == "percentile":
        kwargs.update(num_bins=2048, percentile=config.percentile)
    calibrator = Calibrator(str(prepared), None, str(workdir / "augmented.onnx"), **kwargs)
    calibrator.augment_graph()
    hidden = _expose_watched_tensors(calibrator) if config.method == "minmax" else ()
    calibrator.create_inference_session()
    calibrator.infer_session = ChannelMeans(calibrator.infer_session, hidden=hidden)
    return calibrator


def _entropy_collector(cal, num_bins: int):
    """ONNX Runtime's histogram collector on absolute values, with TensorRT's threshold search."""

    class AbsEntropyCollector(cal.HistogramCollector):
        def collect(self, name_to_arr):
            return self.collect_absolute_value(name_to_arr)

        def compute_collection_result(self):
            result = {}
            for tensor, (hist, edges, low, high) in self.histogram_dict.items():
                t = entropy.entropy_threshold(hist, edges)
                result[tensor] = (np.array(max(low, -t), edges.dtype), np.array(min(high, t), edges.dtype), hist, edges)
            return result

    return AbsEntropyCollector(method="entropy", symmetric=True, num_bins=num_bins, num_quantized_bins=entropy.LEVELS,
                               percentile=99.999, scenario="same")


def _expose_watched_tensors(calibrator) -> tuple[str, ...]:
    """MinMax's augmented graph outputs only reduced min/max values; bias correction also needs each
    watched tensor's channel means, so the tensors themselves become extra outputs (which
    :class:`ChannelMeans` consumes and hides from the calibrator)."""
    import onnx

    model = onnx.load(calibrator.augmented_model_path)
    present = {o.name for o in model.graph.output}
    tensors, _ = calibrator.select_tensors_to_calibrate(model)
    extra = tuple(sorted(t for t in tensors if t not in present))
    for name in extra:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, calibrator.augmented_model_path)
    return extra


class ChannelMeans:
    """Wraps the calibrator's ONNX Runtime session: while the calibrator collects ranges from every
    watched activation, accumulate each one's per-channel mean too (what bias correction needs), so
    no second pass over the images is needed."""

    def __init__(self, session, hidden: Sequence[str] = ()) -> None:
        self._session = session
        self._hidden = set(hidden)
        self._all = [o.name for o in session.get_outputs()]
        self._shown = [i for i, name in enumerate(self._all) if name not in self._hidden]
        self._sums: dict[str, np.ndarray] = {}
        self._count = 0

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def get_outputs(self):
        outputs = self._session.get_outputs()
        return [outputs[i] for i in self._shown]

    def run(self, output_names, feeds, *args, **kwargs):
        if output_names:  # a caller picking outputs itself: no accounting
            return self._session.run(output_names, feeds, *args, **kwargs)
        outputs = self._session.run(None, feeds, *args, **kwargs)
        n = None
        for name, value in zip(self._all, outputs):
            if not isinstance(value, np.ndarray) or value.ndim < 2 or value.dtype != np.float32:
                continue
            n = value.shape[0]
            axes = (0, *range(2, value.ndim))
            self._sums[name] = self._sums.get(name, 0) + value.mean(axis=axes, dtype=np.float64) * n
        self._count += n or 0
        return [outputs[i] for i in self._shown]

    def means(self) -> dict[str, np.ndarray]:
        return {k: (v / self._count).astype(np.float32) for k, v in self._sums.items()} if self._count else {}


def collect_ranges(prepared: Path, reader, config: QuantConfig, workdir: Path):
    """Run the calibrator over ``reader`` a few batches at a time.

    Returns ONNX Runtime's TensorsData and the per-channel means of the watched activations.

    ``reader`` is a clsx.calib.reader.OrtCalibrationReader. Feeding the calibrator in chunks keeps its
    stored activations bounded: MinMax folds them into running ranges, the histogram methods (entropy,
    percentile) into running histograms, after each chunk.
    """
    calibrator = _calibrator(prepared, config, workdir)
    try:
        while not reader.exhausted:
            calibrator.collect_data(reader.chunk(config.batches_per_chunk))
    except ValueError as exc:
        if "No data is collected" in str(exc):
            raise QuantizationError("no calibration image could be decoded") from None
        raise
    ranges = calibrator.compute_data()
    if config.method != "minmax" and config.head_max and config.activation_symmetric:
        _unclip(ranges, head_inputs(prepared), calibrator.collector.histogram_dict)
    return ranges, calibrator.infer_session.means()


def head_inputs(prepared: Path) -> set[str]:
    """The activations read by the classifier head: the inputs of the last weighted layers (the classifier)
    and of the weighted layers that feed them through no other weighted layer (e.g. the 1x1 head convolution
    before global pooling)."""
    import onnx

    model = onnx.load(str(prepared), load_external_data=False)
    skip = shape_nodes(prepared)
    nodes = [n for n in model.graph.node if n.name not in skip]
    by_name = {n.name: n for n in nodes}
    last = _reached(list(reversed(nodes)), {o.name for o in model.graph.output}, forward=False)
    feeding = _reached(list(reversed(nodes)), {by_name[n].input[0] for n in last}, forward=False)
    return {by_name[n].input[0] for n in [*last, *feeding]}


def _unclip(ranges, tensors: set[str], histograms: Mapping[str, tuple]) -> None:
    """Histogram methods: ``tensors`` get their full range max |x| (the collector's ``(hist, edges, min, max)``)
    instead of the clipped threshold."""
    for name in sorted(tensors & set(ranges.data) & set(histograms)):
        data = ranges.data[name]
        low, high = histograms[name][2:4]
        top = np.float32(max(abs(float(low)), abs(float(high))))
        data.lowest, data.highest = np.array(-top, np.float32), np.array(top, np.float32)
        log.debug("%s: full range %.4g (head input, not clipped)", name, top)


def quantize(prepared: Path, out: Path, ranges_cache: Path, config: QuantConfig, *, exclude: Sequence[str] = (),
             bias_shifts: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write the Q/DQ graph for ``prepared`` using cached ranges (no calibration pass).

    ``exclude``: nodes kept in float. ``bias_shifts``: per-node corrections subtracted from the float
    bias before quantizing (see :mod:`clsx.calib.bias_correction`); excluded nodes keep their bias.
    Nodes that compute on tensor shapes are never quantized (see :func:`shape_nodes`).
    """
    q = require("onnxruntime.quantization", purpose="INT8 calibration")
    source = prepared
    if bias_shifts:
        from clsx.calib.bias_correction import apply_shifts

        source = apply_shifts(prepared, {k: v for k, v in bias_shifts.items() if k not in set(exclude)},
                              out.with_name(out.stem + ".bias.onnx"))
    keep_float = sorted(set(exclude) | shape_nodes(prepared) | pixel_nodes(prepared))
    kwargs = config.quantize_kwargs()
    if config.target == "tensorrt":
        # decided without ``exclude``, so that bias shifts measured on the all-quantized graph stay exact
        narrow = integer_kernel_weights(source, shape_nodes(prepared))
        if narrow:
            # per-channel weights need their axis in the override, or ONNX Runtime quantizes them per tensor
            overrides = {name: [{"reduce_range": True, **({"axis": axis} if config.per_channel else {})}]
                         for name, axis in narrow.items()}
            kwargs["extra_options"] = {**kwargs["extra_options"], "TensorQuantOverrides": overrides}
    q.quantize_static(
        str(source),
        str(out),
        calibration_data_reader=None,
        quant_format=q.QuantFormat.QDQ,
        per_channel=config.per_channel,
        weight_type=q.QuantType.QInt8,
        nodes_to_exclude=keep_float or None,
        calibrate_method=config.ort_method(),
        calibration_cache_path=str(ranges_cache),
        **kwargs,
    )
    if exclude:
        _float_inputs_for(out, set(exclude))
    _float_outputs(out)
    return out


def _float_outputs(path: Path) -> None:
    """The network's outputs stay float in every layout: a Q/DQ pair in front of a graph output (ONNX Runtime
    quantizes the logits in the cpu layout, to uint8 with a range calibrated below their true maximum, which
    clips and ties top-1 logits) is removed, and the output is the float tensor before it again."""
    import onnx

    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    changed = False
    for output in model.graph.output:
        dq = producer.get(output.name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear":
            continue
        source = q.input[0]
        for node in model.graph.node:  # the float tensor takes the output's name
            node.input[:] = [output.name if i == source else i for i in node.input]
            node.output[:] = [output.name if o == source else o for o in node.output]
        dq.output[0] = dq.output[0] + "__unused"
        changed = True
    if changed:
        _prune_dangling(model)
        onnx.save(model, str(path))


def integer_kernel_weights(graph: Path, keep_float: set[str] = frozenset()) -> dict[str, int]:
    """Weights that get 7-bit ranges in the TensorRT layout: those of weighted layers whose output feeds only
    another quantized weighted layer, with nothing in between (e.g. a linear-bottleneck projection followed
    directly by the next block's expansion conv).

    In that layout Q/DQ sits only on weighted-layer inputs, meant to run on ONNX Runtime's CPU as float convs
    between Q/DQ pairs. But such a layer is a complete DQ -> Conv -> Q unit: ONNX Runtime's graph optimizer
    (its WeightBiasQuantization rewrite, ORT >= 1.21) quantizes the float bias to int32 and then fuses the unit
    into a QLinearConv / QLinearMatMul / QGemm, converted to uint8 activations (zero point 128). On x86 CPUs
    without VNNI (AVX2 only) that U8S8 kernel sums pairs of uint8 x int8 products in int16 with saturation
    (vpmaddubsw): symmetric activations lie at 128..255 as uint8, and with full-range int8 weights ~2 % of the
    pair sums saturate (measured on efficientnet-lite0: the fused blocks.0.0.conv_pw output at -0.3 dB SQNR,
    held-out top-1 agreement 47 % instead of 94 %). With weights in [-64, 64] a pair sum is at most
    2 * 255 * 64 < 2**15, so no kernel saturates; TensorRT loses one bit on these few layers only.
    Every other weighted layer has an activation or a residual add (or nothing quantized) after it and stays
    a float kernel on ONNX Runtime. Returns ``{weight: its per-channel axis as ONNX Runtime's quantizer picks it}``.
    """
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}

    def quantized(node) -> bool:
        return node.op_type in WEIGHTED_OPS and node.name not in keep_float

    def channel_axis(node) -> int:
        if node.op_type == "Gemm":
            return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
        return 0 if node.op_type == "Conv" else 1  # ConvTranspose: (C_in, C_out/group, ...); MatMul: (K, N)

    weights: dict[str, int] = {}
    for node in model.graph.node:
        if not quantized(node) or len(node.input) < 2 or node.input[1] not in inits or len(node.output) != 1:
            continue
        users = consumers.get(node.output[0], [])
        if node.output[0] not in graph_outputs and len(users) == 1 and quantized(users[0]):
            weights[node.input[1]] = channel_axis(node)
    return dict(sorted(weights.items()))


#: inputs that carry a shape, size, index or axis list, not data: what shape arithmetic computes
SHAPE_INPUTS = {
    "Pad": (1, 3), "Reshape": (1,), "Resize": (1, 2, 3), "Upsample": (1,), "Slice": (1, 2, 3, 4),
    "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Unsqueeze": (1,), "Squeeze": (1,),
    "Range": (0, 1, 2), "TopK": (1,), "Split": (1,), "OneHot": (1,), "ReduceMean": (1,), "ReduceSum": (1,),
    "ReduceMax": (1,), "ReduceMin": (1,), "ReduceProd": (1,), "ReduceL2": (1,), "CenterCropPad": (1,),
}


def pixel_nodes(prepared: Path) -> set[str]:
    """The nodes that normalize a uint8 input (:mod:`clsx.core.pixel_input`): kept float, so no Q/DQ
    pair rounds raw 0..255 pixels to int8 steps of 2."""
    import onnx

    from clsx.core.pixel_input import is_pixel_node

    model = onnx.load(str(prepared), load_external_data=False)
    return {n.name for n in model.graph.node if is_pixel_node(n.name)}


def shape_nodes(prepared: Path) -> set[str]:
    """The nodes that compute tensor shapes: Shape/Size, and every node whose outputs are used only as
    shapes (the shape, size, index or axis inputs of :data:`SHAPE_INPUTS`) or by other shape arithmetic,
    e.g. TorchScript's dynamic "same" padding in timm's tf_* models (Shape -> Gather -> Sub -> Ceil ->
    ... -> Concat -> Pad's pads). Quantizing it would shift paddings and reshapes by whole pixels, so it
    stays in float; the data path it pads or reshapes is not shape arithmetic and is quantized as usual."""
    import onnx

    model = onnx.load(str(prepared), load_external_data=False)
    uses: dict[str, list[tuple[Any, int]]] = {}
    for node in model.graph.node:
        for idx, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, idx))
    graph_outputs = {o.name for o in model.graph.output}
    names: set[str] = set()

    def used_as_shape(node, idx: int) -> bool:
        if node.op_type in ("Shape", "Size"):
            return False  # reads only the producer's shape: the producer itself computes data
        return idx in SHAPE_INPUTS.get(node.op_type, ()) or node.name in names

    for node in reversed(model.graph.node):  # ONNX graphs are topologically sorted: consumers first
        if node.op_type in ("Shape", "Size"):
            names.add(node.name)
            continue
        if node.op_type in WEIGHTED_OPS or any(o in graph_outputs for o in node.output):
            continue
        consumers = [use for o in node.output for use in uses.get(o, [])]
        if consumers and all(used_as_shape(c, i) for c, i in consumers):
            names.add(node.name)
    return names


def _float_inputs_for(path: Path, keep_float: set[str]) -> None:
    """Feed the nodes kept in float their float inputs, without the Q/DQ pair in front of them.

    ``nodes_to_exclude`` only stops ONNX Runtime's quantizer from quantizing a node's weights; an
    activation input still arrives through the Q/DQ pair of its (quantized) producer. ONNX Runtime's
    CPU optimizer then sees DequantizeLinear -> float Conv and quantizes that Conv's weights itself,
    per tensor (its WeightBiasQuantization rewrite): the layer meant to stay in float ends up worse
    than before (measured: 15 -> 10 dB output SQNR on efficientnet-lite0 for the stem convolution).
    Rewiring the node to the tensor before the pair makes "kept in float" true on every runtime.

    In the cpu layout a uint8 pair also *is* the activation before it: ONNX Runtime's quantizer removes a
    Relu/Clip that follows a quantized node and folds it into the pair's range (zero point 0 = ReLU). A float
    node reading the tensor before the pair would see the values the network never computes (measured: resnet18
    34 -> 10 dB output SQNR with two layers kept float); it reads them through a Clip to the pair's range instead.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    clipped: dict[str, str] = {}
    order = {id(n): k for k, n in enumerate(model.graph.node)}
    insert: list[tuple[int, Any]] = []
    for node in model.graph.node:
        if node.name not in keep_float:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue
            source = q.input[0]
            bounds = _uint8_bounds(q, inits)
            if bounds is not None:
                if source not in clipped:
                    lo, hi = (f"{source}__clsx_float_{b}" for b in ("lo", "hi"))
                    model.graph.initializer.extend([numpy_helper.from_array(np.array(bounds[0], np.float32), lo),
                                                    numpy_helper.from_array(np.array(bounds[1], np.float32), hi)])
                    clipped[source] = f"{source}__clsx_float"
                    insert.append((order[id(node)], helper.make_node("Clip", [source, lo, hi], [clipped[source]],
                                                                     name=f"{source}__clsx_float_range")))
                source = clipped[source]
            node.input[i] = source
    for position, clip in sorted(insert, key=lambda item: item[0], reverse=True):
        model.graph.node.insert(position, clip)
    _prune_dangling(model)
    onnx.save(model, str(path))


def _uint8_bounds(q, inits) -> tuple[float, float] | None:
    """The float range a per-tensor uint8 QuantizeLinear represents, ``((0 - zp) * s, (255 - zp) * s)``; None for
    int8 (the tensorrt layout folds no activation into its pairs) or anything else."""
    from onnx import numpy_helper

    if len(q.input) < 3 or q.input[1] not in inits or q.input[2] not in inits:
        return None
    scale, zero = numpy_helper.to_array(inits[q.input[1]]), numpy_helper.to_array(inits[q.input[2]])
    if zero.dtype != np.uint8 or scale.size != 1 or zero.size != 1:
        return None
    s, z = float(scale.reshape(())), int(zero.reshape(()))
    return (0 - z) * s, (255 - z) * s


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


#: what ``keep_float`` may name: the network's first weighted layers (they read the image itself) and its
#: last ones (they produce the logits)
BOUNDARIES = ("first", "last")


def parse_keep_float(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"first,last"`` / ``"none"`` / a sequence -> the checked tuple of :data:`BOUNDARIES` names."""
    parts = text.split(",") if isinstance(text, str) else list(text or ())
    names = tuple(dict.fromkeys(p.strip() for p in parts if p.strip() and p.strip() != "none"))
    bad = [n for n in names if n not in BOUNDARIES]
    if bad:
        raise QuantizationError(f"--keep-float takes first, last, first,last or none; got {', '.join(bad)}")
    return names


def boundary_layers(prepared: Path, which: Sequence[str]) -> list[str]:
    """The weighted layers ``which`` names: ``first`` = those reached from the graph input through no other
    weighted layer (the stem convolution, behind any Pad/Transpose), ``last`` = those from which a graph output
    is reached through no other weighted layer (the classifier producing the logits).

    Common TensorRT practice (and ModelOpt's default exclusions) keeps these in float: the stem reads the
    8-bit image, which a symmetric int8 scale shared with negative values represents with one bit less,
    and the classifier's rounding error lands directly on the logits; both are a tiny share of the compute.
    """
    import onnx

    if not which:
        return []
    model = onnx.load(str(prepared), load_external_data=False)
    skip = shape_nodes(prepared)
    nodes = [n for n in model.graph.node if n.name not in skip]
    inits = {t.name for t in model.graph.initializer}
    found: list[str] = []
    if "first" in which:
        start = {i.name for i in model.graph.input if i.name not in inits}
        found += _reached(nodes, start, forward=True)
    if "last" in which:
        found += _reached(list(reversed(nodes)), {o.name for o in model.graph.output}, forward=False)
    return list(dict.fromkeys(found))


def _reached(nodes, tensors: set[str], *, forward: bool) -> list[str]:
    """Weighted nodes reached from ``tensors`` through non-weighted nodes only (``nodes`` in walking order)."""
    live, hit = set(tensors), []
    for node in nodes:
        ins, outs = (node.input, node.output) if forward else (node.output, node.input)
        if not any(t in live for t in ins):
            continue
        if node.op_type in WEIGHTED_OPS:
            hit.append(node.name)
        else:
            live.update(t for t in outs if t)
    return hit


def quantizable_nodes(prepared: Path) -> list[str]:
    """Names of the weighted layers (the candidates for keeping in float), shape arithmetic excepted."""
    import onnx

    model = onnx.load(str(prepared), load_external_data=False)
    skip = shape_nodes(prepared)
    return [n.name for n in model.graph.node if n.op_type in WEIGHTED_OPS and n.name not in skip]


def unquantized_layers(prepared: Path, qdq_path: Path, kept_float: Sequence[str] = ()) -> dict[str, str]:
    """Weighted layers of ``prepared`` that are neither kept in float on purpose nor quantized in
    ``qdq_path`` (no DequantizeLinear on their weight), each with the reason found: ``{node: why}``."""
    import onnx

    source = onnx.load(str(prepared), load_external_data=False)
    inits = {t.name for t in source.graph.initializer}
    shapes = shape_nodes(prepared)
    out = onnx.load(str(qdq_path), load_external_data=False)
    dq_outputs = {o for n in out.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = {n.name for n in out.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in dq_outputs}
    missing: dict[str, str] = {}
    for node in source.graph.node:
        if node.op_type not in WEIGHTED_OPS or node.name in kept_float or node.name in quantized:
            continue
        if node.name in shapes:
            missing[node.name] = "it computes a shape"
        elif len(node.input) < 2 or node.input[1] not in inits:
            missing[node.name] = "its weight is computed in the graph, not a constant"
        else:
            missing[node.name] = "ONNX Runtime's quantizer left it in float"
    return missing


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

