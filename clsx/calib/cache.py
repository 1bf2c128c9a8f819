"""Calibration cache: the computed tensor ranges, keyed so they are never applied to the wrong graph.

File layout (JSON)::

    {"clsx_calibration_cache": 3, "parent_sha256": ..., "method": ..., "target": ..., "images_sha256": ...,
     "num_images": ..., "ranges": <ONNX Runtime TensorsData as written by save_tensors_data>,
     "input_means": {tensor: [per-channel mean, ...]}}   # for bias correction

The key is the parent FP32 graph's sha256, the method, the target layout (symmetric or asymmetric
ranges) and the image list. Reusing a cache for a different graph, method or target is refused; a
different image list is allowed (that is the point of reusing ranges) but reported.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clsx.core.optional import require
from clsx.core.errors import ClsxError
from clsx.core.spec import is_int, is_number, show_value
from clsx.core.files import write_file

log = logging.getLogger(__name__)
FORMAT = 3  # 3: entropy ranges from the |x| histogram search (clsx.calib.entropy); format-2 entropy ranges clip too hard


class CalibrationCacheError(ClsxError):
    """A cache file that is unreadable or belongs to another graph or method."""


@dataclass(frozen=True)
class CacheKey:
    parent_sha256: str
    method: str
    target: str
    images_sha256: str
    num_images: int


def save(path: Path, key: CacheKey, tensors_data: Any, input_means: dict[str, np.ndarray] | None = None) -> None:
    """Write ranges (ONNX Runtime TensorsData), bias-correction means and their key to ``path`` atomically."""
    cal = require("onnxruntime.quantization.calibrate", purpose="INT8 calibration")
    with tempfile.TemporaryDirectory() as tmp:
        ort_file = Path(tmp) / "ranges.json"
        cal.save_tensors_data(tensors_data, ort_file)
        ranges = json.loads(ort_file.read_text())
    means = {name: [float(x) for x in np.ravel(v)] for name, v in (input_means or {}).items()}
    doc = {"clsx_calibration_cache": FORMAT, **key.__dict__, "ranges": ranges, "input_means": means}
    write_file(path, json.dumps(doc) + "\n", force=True)  # a cache is meant to be refreshed


def load(path: Path, expect: CacheKey, graph: Path | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a cache and check it belongs to ``expect``'s graph, method and target, and (``graph``: the
    prepared FP32 graph being calibrated) that every range and mean is well-formed and names a tensor
    of that graph, means having the channel count of the layer they feed.

    Returns ONNX Runtime's ranges payload and the bias-correction input means. A cache that is not
    what :func:`save` writes is one :class:`CalibrationCacheError` line ("tampered or corrupt ...")."""
    from clsx.core.artifact import read_text_file
    from clsx.core.metadata import check_json_tree, parse_json

    text = read_text_file(path, what="calibration cache", error=CalibrationCacheError)
    where = f"tampered or corrupt calibration cache {path}"
    doc = parse_json(text, where, error=CalibrationCacheError)
    check_json_tree(doc, where, error=CalibrationCacheError)  # depth, and no NaN/Infinity anywhere
    if not isinstance(doc, dict) or "ranges" not in doc or "clsx_calibration_cache" not in doc:
        raise CalibrationCacheError(f"calibration cache {path}: not a clsx calibration cache")
    if not is_int(doc["clsx_calibration_cache"]):
        raise _corrupt(path, "clsx_calibration_cache", f"must be an integer; got {show_value(doc['clsx_calibration_cache'])}")
    if doc["clsx_calibration_cache"] != FORMAT:
        raise CalibrationCacheError(f"calibration cache {path} has format {doc['clsx_calibration_cache']}, this clsx reads "
                                    f"format {FORMAT}; recalibrate without --cache to rewrite it")
    for key in ("parent_sha256", "method", "target", "images_sha256"):
        if not isinstance(doc.get(key), str):
            raise _corrupt(path, key, f"must be a string; got {show_value(doc.get(key))}")
    if not is_int(doc.get("num_images")) or doc["num_images"] < 0:
        raise _corrupt(path, "num_images", f"must be a non-negative integer; got {show_value(doc.get('num_images'))}")
    if doc.get("parent_sha256") != expect.parent_sha256:
        raise CalibrationCacheError(
            f"calibration cache {path} was computed for another graph (sha256 {str(doc.get('parent_sha256'))[:12]}…, "
            f"this one is {expect.parent_sha256[:12]}…); recalibrate without --cache or pass the matching model"
        )
    if doc.get("method") != expect.method:
        raise CalibrationCacheError(f"calibration cache {path} holds {doc.get('method')} ranges, not {expect.method}; pass --method {doc.get('method')}")
    if doc.get("target") != expect.target:
        raise CalibrationCacheError(f"calibration cache {path} holds ranges for the {doc.get('target')} layout, not {expect.target}; "
                                    f"pass --for {doc.get('target')} or recalibrate")
    if doc.get("images_sha256") != expect.images_sha256:
        log.warning("calibration cache %s was computed on another image list (%s images); reusing its ranges", path, doc.get("num_images"))
    names, channels = _graph_tensors(graph) if graph is not None else (None, {})
    _check_ranges(path, doc["ranges"], expect.method, names)
    means = _check_means(path, doc.get("input_means"), names, channels)
    return doc["ranges"], means


#: ONNX Runtime's CalibrationMethod names for clsx's --method values
_ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
#: TensorData fields that ONNX Runtime turns into float arrays (it requires float16/float32 for them)
_FLOAT_FIELDS = ("avg", "std", "lowest", "highest", "hist_edges")
_NUMERIC_DTYPES = {"float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}


def _corrupt(path: Path, field: str, problem: str) -> CalibrationCacheError:
    return CalibrationCacheError(f"tampered or corrupt calibration cache {path}: {field} {problem}; "
                                 "delete it to calibrate again")


def _graph_tensors(graph: Path) -> tuple[set[str], dict[str, int]]:
    """The activation names of ``graph`` (inputs and node outputs) and, for each input of a Conv/Gemm
    with a constant weight, the channel count its bias-correction mean must have."""
    import onnx

    from clsx.calib.bias_correction import CORRECTED_OPS

    model = onnx.load(str(graph), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    names = {i.name for i in model.graph.input if i.name not in inits} | {o for n in model.graph.node for o in n.output if o}
    channels: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in CORRECTED_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        dims = list(inits[node.input[1]].dims)
        attrs = {a.name: a.i for a in node.attribute}
        if node.op_type == "Conv" and len(dims) >= 2:
            channels[node.input[0]] = dims[1] * attrs.get("group", 1)
        elif node.op_type == "Gemm" and len(dims) == 2 and not attrs.get("transA", 0):
            channels[node.input[0]] = dims[1] if attrs.get("transB", 0) else dims[0]
    return names, channels


def _array(value: Any, path: Path, field: str, *, floats: bool) -> np.ndarray:
    """A TensorData value (a number, a list of numbers or ``{"CLS": "numpy.array", "data", "dtype"}``)
    as a float64 array; anything else is a corrupt cache."""
    if isinstance(value, dict):
        dtype = value.get("dtype")
        if value.get("CLS") != "numpy.array" or "data" not in value or not isinstance(dtype, str) or dtype not in _NUMERIC_DTYPES:
            raise _corrupt(path, field, f"must be a number or a numpy.array entry; got {show_value(value)}")
        if floats and dtype not in ("float16", "float32"):
            raise _corrupt(path, field, f"must be float32 or float16; got dtype {dtype!r}")
        value = value["data"]
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise _corrupt(path, field, f"must be numbers; got {show_value(value)}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _corrupt(path, field, f"must be numbers; got {show_value(value)}") from None
    if arr.size == 0:
        raise _corrupt(path, field, "is empty")
    return arr


#: Largest |activation| a cache may claim: a real network's are many orders below, and a float32 scale
#: of range/127 must stay finite (a tampered 1e308 made every Q/DQ scale inf and the output NaN).
_LARGEST_RANGE = 1e30


def _check_ranges(path: Path, ranges: Any, method: str, names: set[str] | None) -> None:
    """ONNX Runtime's TensorsData payload: every tensor's lowest <= highest, finite, of one length,
    histograms consistent, tensors of the graph being calibrated."""
    if not isinstance(ranges, dict):
        raise _corrupt(path, "ranges", f"must be an object; got {show_value(ranges)}")
    how = ranges.get("calibration_method")
    want = _ORT_METHODS.get(method, method)
    if not isinstance(how, dict) or how.get("CLS") != "CalibrationMethod" or str(how.get("value")).split(".")[-1] != want:
        raise _corrupt(path, "ranges.calibration_method", f"must be CalibrationMethod.{want} (the cache's method); got {show_value(how)}")
    data = ranges.get("data")
    if not isinstance(data, dict) or not data:
        raise _corrupt(path, "ranges.data", f"must be a non-empty object of tensor ranges; got {show_value(data)}")
    for name, entry in data.items():
        field = f"ranges.data[{name!r}]" if len(name) <= 60 else f"ranges.data[{name[:57]!r}...]"
        if names is not None and name not in names:
            raise _corrupt(path, field, "names a tensor the graph being calibrated does not have")
        if not isinstance(entry, dict) or "lowest" not in entry or "highest" not in entry:
            raise _corrupt(path, field, f"must be an object with lowest and highest; got {show_value(entry)}")
        values = {k: _array(v, path, f"{field}.{k}", floats=k in _FLOAT_FIELDS) for k, v in entry.items() if k != "CLS"}
        low, high = values["lowest"], values["highest"]
        if low.shape != high.shape:
            raise _corrupt(path, field, f"has lowest of shape {low.shape} but highest of shape {high.shape}")
        if np.any(low > high):
            raise _corrupt(path, field, f"has lowest {low.ravel()[:4].tolist()} above highest {high.ravel()[:4].tolist()}")
        if max(np.abs(low).max(initial=0.0), np.abs(high).max(initial=0.0)) > _LARGEST_RANGE:
            raise _corrupt(path, field, f"has a range of {max(np.abs(low).max(), np.abs(high).max()):.3g}: beyond "
                                        f"{_LARGEST_RANGE:.0e}, its int8 scale would be no use (float32 overflow above 3.4e38)")
        hist, bins = values.get("hist"), values.get("bins")
        if hist is not None and bins is not None and hist.size > 1 and bins.size != hist.size + 1:
            raise _corrupt(path, field, f"has a histogram of {hist.size} counts but {bins.size} bin edges")


def _check_means(path: Path, means: Any, names: set[str] | None, channels: dict[str, int]) -> dict[str, np.ndarray]:
    """Bias-correction means: finite per-channel lists, each of the channel count of the layer it feeds."""
    if means is None:
        return {}
    if not isinstance(means, dict):
        raise _corrupt(path, "input_means", f"must be an object; got {show_value(means)}")
    out: dict[str, np.ndarray] = {}
    for name, values in means.items():
        field = f"input_means[{name!r}]" if len(name) <= 60 else f"input_means[{name[:57]!r}...]"
        if names is not None and name not in names:
            raise _corrupt(path, field, "names a tensor the graph being calibrated does not have")
        if not isinstance(values, list) or not values or not all(is_number(v) for v in values):
            raise _corrupt(path, field, f"must be a non-empty list of finite numbers; got {show_value(values)}")
        if name in channels and len(values) != channels[name]:
            raise _corrupt(path, field, f"has {len(values)} values but the layer it feeds has {channels[name]} input channels")
        out[name] = np.asarray(values, dtype=np.float32)
    return out


def write_ort_ranges(ranges: dict[str, Any], dest: Path) -> Path:
    """ONNX Runtime's own cache file, which quantize_static reads instead of calibrating."""
    dest.write_text(json.dumps(ranges))
    return dest
