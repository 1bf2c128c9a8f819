"""Calibration cache: the computed tensor ranges, keyed so they are never applied to the wrong graph.

File layout (JSON)::

    {"clsx_calibration_cache": 2, "parent_sha256": ..., "method": ..., "target": ..., "images_sha256": ...,
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
from clsx.core.files import write_file

log = logging.getLogger(__name__)
FORMAT = 2


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


def load(path: Path, expect: CacheKey) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a cache and check it belongs to ``expect``'s graph, method and target.

    Returns ONNX Runtime's ranges payload and the bias-correction input means."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationCacheError(f"calibration cache {path}: no such file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationCacheError(f"calibration cache {path}: unreadable ({exc})") from None
    if not isinstance(doc, dict) or "ranges" not in doc or "clsx_calibration_cache" not in doc:
        raise CalibrationCacheError(f"calibration cache {path}: not a clsx calibration cache")
    if doc["clsx_calibration_cache"] != FORMAT:
        raise CalibrationCacheError(f"calibration cache {path} has format {doc['clsx_calibration_cache']}, this clsx reads "
                                    f"format {FORMAT}; recalibrate without --cache to rewrite it")
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
    means = {name: np.asarray(v, dtype=np.float32) for name, v in (doc.get("input_means") or {}).items()}
    return doc["ranges"], means


def write_ort_ranges(ranges: dict[str, Any], dest: Path) -> Path:
    """ONNX Runtime's own cache file, which quantize_static reads instead of calibrating."""
    dest.write_text(json.dumps(ranges))
    return dest
