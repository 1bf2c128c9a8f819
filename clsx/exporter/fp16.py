"""FP32 ONNX -> FP16 ONNX with FP32 inputs and outputs, overflow-prone parts kept in FP32.

TensorRT 11 has no FP16 builder flag: precision lives in the graph, so the FP16 graph written here is
the one TensorRT compiles, and ONNX Runtime on CPU runs it too (so it is verified on any machine).

The conversion is onnxconverter-common's ``convert_float_to_float16`` with ``keep_io_types=True``
(the same preprocessing feeds FP32 and FP16 graphs), plus what keeps it correct:

* **op block list** (:data:`FP16_OP_BLOCK_LIST`): onnxconverter-common's defaults plus the ops
  PyTorch's own autocast runs in FP32 because they overflow or lose accuracy in FP16: exponentials,
  logarithms, powers and reciprocals, softmax, normalisations and sum-type reductions;
* **measured ranges**: the FP32 graph runs on a few real photos with every intermediate tensor
  exposed; a node whose input or output exceeds :data:`FP16_ACTIVATION_LIMIT` (1/8 of FP16's
  65504, headroom for images not seen) stays FP32, as does any node reading a weight that FP16
  cannot represent. This is the data-driven part of NVIDIA ModelOpt's AutoCast, done with ORT;
* **graph fixes** the converter needs: unique node names (its Cast names derive from them), shared
  constants split between FP32 and FP16 consumers, and ``Cast(to=float)`` nodes of the original
  graph retargeted to float16 inside the FP16 region;
* weights are clamped at FP16's true range (65504), not the converter's default of 1e4.

On ONNX Runtime's CPU provider most FP16 nodes run through FP32 kernels with casts around them, so
CPU verification measures weight rounding, the graph surgery and the I/O types; FP16 arithmetic
itself (and activation overflow the photos did not reach) shows on the GPU (``clsx parity``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from clsx.core.pixel_input import is_pixel_node
from clsx.core.spec import InputFormat
from clsx.core.optional import require
from clsx.core.errors import GateFailedError
from clsx.core.progress import Phase
from clsx.core.files import first_line, describe_exception
from clsx.core.files import check_writable, output_path, sha256_file
from clsx.exporter.artifacts import (
    ExportError,
    ExportResult,
    commit,
    failed_path_for,
    fp16_path_for,
    infer_shapes,
    refuse_existing,
    remove_quietly,
    runnable,
    stage,
    staging_folder,
)

if TYPE_CHECKING:
    import onnx

    from clsx.exporter.verify import Probe, Verification

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
#: activations above this magnitude on the calibration photos keep their node in FP32
FP16_ACTIVATION_LIMIT = FP16_MAX / 8
#: photos used to measure activation ranges
RANGE_PHOTOS = 4

# PyTorch autocast's FP32 list (ops that overflow or lose accuracy in FP16), as ONNX op types.
_AUTOCAST_FP32_OPS = (
    "Exp", "Log", "Pow", "Reciprocal", "Softplus", "Acos", "Asin", "Cosh", "Sinh", "Tan",
    "Softmax", "LogSoftmax",
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "LpNormalization",
    "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    "CumSum",
)


def _op_block_list() -> list[str]:
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    return sorted(set(DEFAULT_OP_BLOCK_LIST) | set(_AUTOCAST_FP32_OPS))


FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16


def name_nodes(graph: Any) -> None:
    """Give every node a unique name (the converter keys block lists and Cast names on them)."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def activation_ranges(model: "onnx.ModelProto", x: np.ndarray, chunk: int | None, pad: bool) -> dict[str, float]:
    """Max |value| of every float tensor of ``model`` (inputs and intermediates) over ``x``
    (``model`` is unchanged afterwards)."""
    from clsx.exporter.verify import run_chunked

    ort = require("onnxruntime", purpose="FP16 conversion (activation ranges)")

    inferred = infer_shapes(model)
    float_values = [vi for vi in inferred.graph.value_info if vi.type.tensor_type.elem_type == FLOAT]
    del inferred
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # measure the graph as written
    # expose every float tensor as an output of ``model`` itself for the session (no copy of the
    # weights, which matters at 2 GiB), then take the extra outputs away again
    n_outputs = len(model.graph.output)
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(vi for vi in float_values if vi.name not in existing)
    try:
        with runnable(model) as source:  # bytes, or a path for a graph of 2 GiB or more
            session = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    finally:
        del model.graph.output[n_outputs:]
    names = [o.name for o in session.get_outputs()]
    in_name = session.get_inputs()[0].name
    ranges: dict[str, float] = {in_name: float(np.abs(x).max()) if x.size else 0.0}

    def fn(batch: np.ndarray) -> np.ndarray:
        for name, value in zip(names, session.run(names, {in_name: batch})):
            if value.size and np.issubdtype(value.dtype, np.floating):
                peak = float(np.nan_to_num(np.abs(value), nan=np.inf).max())  # NaN counts as overflow
                ranges[name] = max(ranges.get(name, 0.0), peak)
        return np.zeros((len(batch), 1), np.float32)

    run_chunked(fn, x, chunk, pad)
    return ranges


def nodes_to_keep_fp32(model: "onnx.ModelProto", ranges: Mapping[str, float], limit: float) -> tuple[list[str], list[str]]:
    """(nodes whose tensors exceed ``limit`` on the photos, nodes reading weights beyond FP16's range)."""
    from onnx import numpy_helper

    hot = {name for name, peak in ranges.items() if not peak <= limit}
    big = set()
    for init in model.graph.initializer:
        if init.data_type == FLOAT and init.dims and np.prod(init.dims) > 0:
            # max and min instead of abs(): no temporary copy of a weight tensor (large at 2 GiB)
            w = np.frombuffer(init.raw_data, np.float32) if init.raw_data else numpy_helper.to_array(init)
            if max(float(w.max()), -float(w.min())) > FP16_MAX or not np.isfinite(w.max() - w.min()):
                big.add(init.name)
            del w
    by_range, by_weight = [], []
    for node in model.graph.node:
        if any(t in hot for t in (*node.input, *node.output) if t):
            by_range.append(node.name)
        elif any(t in big for t in node.input):
            by_weight.append(node.name)
    return by_range, by_weight


def _split_shared_initializers(graph: Any, blocked: set[str], op_block: set[str]) -> None:
    """An FP32 initializer read by both a kept-FP32 node and an FP16 node would stay FP32 (the
    converter skips inputs of blocked nodes) and break the FP16 reader: give the FP32 readers a copy."""
    inits = {t.name: t for t in graph.initializer if t.data_type == FLOAT}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                readers.setdefault(name, []).append(node)
    for name, nodes in readers.items():
        is_blocked = [n.op_type in op_block or n.name in blocked for n in nodes]
        if any(is_blocked) and not all(is_blocked):
            copy = graph.initializer.add()
            copy.CopyFrom(inits[name])
            copy.name = f"{name}__fp32"
            for node, b in zip(nodes, is_blocked):
                if b:
                    node.input[:] = [copy.name if i == name else i for i in node.input]


def _noop_casts_to_identity(graph: Any) -> int:
    """``Cast(float -> float)`` becomes ``Identity``: the converter pairs such a Cast with the Cast16 it
    puts after a kept-FP32 producer and deletes both, leaving an FP32 tensor in the FP16 region."""
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*graph.input, *graph.value_info)}
    types.update({t.name: t.data_type for t in graph.initializer})
    count = 0
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to == FLOAT and types.get(node.input[0]) == FLOAT:
            node.op_type = "Identity"
            del node.attribute[:]
            count += 1
    return count


def _keep_io_float(graph: Any) -> int:
    """Graph outputs (and inputs) typed float16 after conversion get a Cast back to float, so the FP16
    graph has FP32 I/O whatever the converter did around kept-FP32 nodes at the graph's edges."""
    from onnx import helper

    added = 0
    for out in graph.output:
        tt = out.type.tensor_type
        if tt.elem_type != FLOAT16:
            continue
        inner = f"{out.name}__fp16"
        for node in graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        graph.node.append(helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"{out.name}__to_fp32"))
        tt.elem_type = FLOAT
        added += 1
    for inp in graph.input:
        tt = inp.type.tensor_type
        if tt.elem_type != FLOAT16:
            continue
        inner = f"{inp.name}__fp16"
        for node in graph.node:
            node.input[:] = [inner if i == inp.name else i for i in node.input]
        graph.node.insert(0, helper.make_node("Cast", [inp.name], [inner], to=FLOAT16, name=f"{inp.name}__to_fp16"))
        tt.elem_type = FLOAT
        added += 1
    return added


def to_fp16(model: "onnx.ModelProto", calib: np.ndarray | None, *, chunk: int | None = 2, pad: bool = False,
            limit: float = FP16_ACTIVATION_LIMIT, inplace: bool = False) -> tuple["onnx.ModelProto", dict[str, Any]]:
    """The FP16 version of ``model`` and a report of what stayed FP32 and why. ``model`` is copied
    first unless ``inplace`` (then it is converted itself: the exporter's own copy, which saves
    holding the weights twice for a graph of 2 GiB)."""
    import onnx
    from onnxconverter_common import __version__ as occ_version
    from onnxconverter_common.float16 import convert_float_to_float16

    if inplace:
        src = model
    else:
        src = onnx.ModelProto()
        src.CopyFrom(model)
    del src.metadata_props[:]
    name_nodes(src.graph)
    # value_info entries for initializers would be flipped to float16 by the converter while a kept-FP32
    # initializer stays float: drop them (initializers carry their own type)
    init_names = {t.name for t in src.graph.initializer}
    kept = [vi for vi in src.graph.value_info if vi.name not in init_names]
    del src.graph.value_info[:]
    src.graph.value_info.extend(kept)
    identities = _noop_casts_to_identity(src.graph)
    ranges = activation_ranges(src, calib, chunk, pad) if calib is not None and len(calib) else {}
    by_range, by_weight = nodes_to_keep_fp32(src, ranges, limit)
    op_block = _op_block_list()
    node_block = set(by_range) | set(by_weight)
    node_block |= {n.name for n in src.graph.node if is_pixel_node(n.name)}  # uint8 input: normalize in FP32
    _split_shared_initializers(src.graph, node_block, set(op_block))
    original_casts = {n.name for n in src.graph.node if n.op_type == "Cast"}
    n_nodes = len(src.graph.node)
    kept_by_op = sum(1 for n in src.graph.node if n.op_type in op_block)
    # the converter's own shape inference serializes the model, which fails at 2 GiB: infer here
    # (the converter then works on ``src`` in place, our copy)
    known = {vi.name for vi in src.graph.value_info}
    src.graph.value_info.extend(vi for vi in infer_shapes(src).graph.value_info if vi.name not in known)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = convert_float_to_float16(
            src, keep_io_types=True, op_block_list=op_block, node_block_list=sorted(node_block),
            max_finite_val=FP16_MAX, min_positive_val=float(np.finfo(np.float16).smallest_subnormal),
            disable_shape_infer=True,
        )
    clamped = sum("truncated" in str(w.message) for w in caught)
    retargeted = 0
    for node in out.graph.node:  # Cast(to=float) of the original graph inside the FP16 region
        if node.name in original_casts and node.name not in node_block and "Cast" not in op_block:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = FLOAT16
                    retargeted += 1
    io_fixed = _keep_io_float(out.graph)
    report = {
        "converter": f"onnxconverter-common {occ_version} float16 (keep_io_types=True)",
        "op_block_list": op_block,
        "activation_limit": limit,
        "range_images": 0 if calib is None else int(len(calib)),
        "nodes": n_nodes,
        "nodes_fp32_by_op": kept_by_op,
        "nodes_fp32_by_range": sorted(by_range),
        "nodes_fp32_by_weight_range": sorted(by_weight),
        "tensors_clamped": clamped,  # weights with values outside FP16's range (saturated, or lifted to its smallest subnormal)
        "casts_retargeted": retargeted,
        "noop_casts_removed": identities,
        "io_casts_added": io_fixed,
    }
    log.info(
        "fp16: %d of %d nodes kept in FP32 (%d by op type, %d by activation range > %g on %d photos, %d by weight range)",
        kept_by_op + len(node_block), n_nodes, kept_by_op, len(by_range), limit, report["range_images"], len(by_weight),
    )
    return out, report


# ---------------------------------------------------------------------------------------------
# conversion + verification + writing


def fp16_from_fp32(
    fp32_model: "onnx.ModelProto",
    parent_sha256: str,
    fp32_doc: Mapping[str, Any],
    dst: Path,
    *,
    fp32_source: "bytes | str | None" = None,
    verify: bool = True,
    probe: "Probe | None" = None,
    fp32_logits: dict[str, np.ndarray] | None = None,
    verify_photos: int | None = None,
    t0: float | None = None,
    force: bool = False,
) -> ExportResult:
    """Convert, verify against the FP32 graph on ORT (reusing its logits when given) and write ``dst``.

    ``fp32_model`` has its weights loaded and is converted in place; ``parent_sha256`` is the FP32 file's sha256;
    ``fp32_source`` (its bytes or path) is what ONNX Runtime runs when ``fp32_logits`` is not given.
    The FP16 graph is half the size of the FP32 one, so an FP32 graph with external data usually
    gives a self-contained FP16 file; one still at 2 GiB or more gets its own ``<dst>.data``."""
    from clsx.exporter.verify import Verification, check_graph, default_photos, make_probe
    from clsx.core.metadata import make_document, spec_of

    t0 = time.perf_counter() if t0 is None else t0
    spec = spec_of(fp32_doc)
    fmt = InputFormat.of_tensor((fp32_doc.get("inputs") or [{}])[0])
    batch = fp32_doc.get("producer", {}).get("batch") or {"dynamic": True, "size": None, "max": None}
    static = None if batch.get("dynamic", True) else int(batch["size"])
    if probe is None:
        if verify_photos is None:
            verify_photos = default_photos(real_weights=spec.weights != "random")
        probe = make_probe(spec.preprocess, static_batch=static, max_batch=batch.get("max"),
                           photos=verify_photos if verify else RANGE_PHOTOS, fmt=fmt)
    feeds = probe.feeds(fmt.dtype)
    calib = feeds["photos"][:RANGE_PHOTOS] if len(probe.photos) else feeds["random"]
    with Phase("converting to FP16", log):
        model16, report = to_fp16(fp32_model, calib, chunk=static or 2, pad=static is not None, inplace=True)
    del fp32_model

    with staging_folder(dst) as workdir:
        staged = stage(model16, workdir)
        del model16
        verification: Verification | None = None
        problem = check_graph(staged.source)
        if problem:
            verification = Verification(reference="onnx fp32", candidate="onnx fp16", reasons=[f"onnx.checker: {problem}"])
            log.error("verification: %s", verification.reasons[0])
        elif verify:
            verification = _verify_fp16(staged.source, fp32_source, probe, fp32_logits, real_weights=spec.weights != "random")

        producer = dict(fp32_doc.get("producer", {}))
        producer["fp16"] = report
        doc = make_document(
            spec, artifact="onnx", precision="fp16", inputs=list(fp32_doc["inputs"]), outputs=list(fp32_doc["outputs"]),
            parent_sha256=parent_sha256, producer=producer,
            verification=verification.to_dict() if verification else None, **staged.sections(),
        )
        if verification is not None and not verification.passed:
            failed = failed_path_for(dst)
            commit(staged, failed, doc, force=True)  # a diagnostic copy: the last one counts
            raise GateFailedError(
                f"FP16 verification failed for {spec.ref} ({'; '.join(verification.reasons)}); "
                f"the graph was kept as {failed} for inspection"
            )
        written = commit(staged, dst, doc, force=force)
    remove_quietly(failed_path_for(dst))
    log.info("wrote %s (%s, sha256 %s)", dst, staged.describe(dst), written.sha256[:12])
    return ExportResult(
        path=dst, fp32_path=None, metadata=written.doc, exporter=str(producer.get("exporter", "")),
        verification=written.doc["verification"], seconds=time.perf_counter() - t0, fp16_path=dst, sha256=written.sha256,
    )


def _verify_fp16(fp16_model: "bytes | str", fp32_model: "bytes | str | None", probe: "Probe", fp32_logits: dict | None,
                 *, real_weights: bool) -> "Verification":
    """ONNX Runtime: the FP16 graph vs the FP32 graph on the same photos and random input."""
    from clsx.exporter.verify import FP16_VS_FP32, OrtRunner, Verification, compare

    t = time.perf_counter()
    try:
        if fp32_logits is None:
            if fp32_model is None:
                raise ValueError("neither the FP32 graph nor its logits were given")
            fp32_logits = OrtRunner(fp32_model).logits(probe)
        runner = OrtRunner(fp16_model)
        got = runner.logits(probe)
    except Exception as exc:  # ORT refuses or crashes on the graph
        v = Verification(reference="onnx fp32", candidate="onnx fp16",
                         reasons=[f"onnxruntime cannot run the FP16 graph: {describe_exception(exc)}"])
        log.error("verification: %s", v.reasons[0])
        return v
    v = compare(fp32_logits, got, tolerance=FP16_VS_FP32, real_weights=real_weights, reference="onnx fp32",
                candidate=f"onnx fp16 on {runner.describe()}", photo_names=probe.photo_names)
    (log.info if v.passed else log.error)("verify %s (%.1f s)", v.summary(), time.perf_counter() - t)
    return v


def convert_fp16(
    src_onnx: str | Path,
    dst: str | Path | None = None,
    *,
    verify: bool = True,
    force: bool = False,
    verify_photos: int | None = None,
) -> ExportResult:
    """FP32 clsx ONNX file -> ``<stem>.fp16.onnx`` beside it (or ``dst``), verified against the FP32 graph.

    The source must carry clsx metadata (it says how to preprocess the verification photos).
    """
    import onnx

    from clsx.core.metadata import MetadataError, read_onnx_metadata

    from clsx.core.artifact import checked_onnx

    t0 = time.perf_counter()
    src = Path(src_onnx)
    doc = read_onnx_metadata(src)  # raises MetadataError for missing/unreadable files
    checked_onnx(src)  # its external data inside its folder, before onnx.load and ONNX Runtime read it
    if doc is None:
        raise MetadataError(f"{src}: no clsx metadata inside; export it with `clsx export` first")
    if doc.get("precision") != "fp32":
        raise ExportError(f"{src} is a {doc.get('precision')} graph; FP16 conversion starts from an FP32 graph")
    # dst: a .onnx file, or a folder (an existing one, or a string ending in / to create) for <stem>.fp16.onnx
    out = fp16_path_for(src) if dst is None else output_path(os.path.expanduser(dst), fp16_path_for(src).name)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"cannot write {out}: the output must be a .onnx file or a folder (end it with / to create it)")
    check_writable(out, error=ExportError)
    refuse_existing([out], force=force)
    try:
        model = onnx.load(str(src))  # weights in <src>.data (a graph of 2 GiB or more) are read too
    except Exception as exc:
        raise MetadataError(f"{src}: not a readable ONNX file, or its external data is missing ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None
    res = fp16_from_fp32(model, sha256_file(src), doc, out, fp32_source=str(src), verify=verify,
                         verify_photos=verify_photos, t0=t0, force=force)
    return ExportResult(
        path=res.path, fp32_path=src, metadata=res.metadata, exporter=res.exporter, verification=res.verification,
        seconds=time.perf_counter() - t0, fp16_path=res.path, sha256=res.sha256,
        fp32_verification=doc.get("verification"),
    )
