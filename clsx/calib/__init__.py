"""INT8 calibration on an image folder -> a TensorRT-ready Q/DQ ONNX graph (``clsx calib``).

Pipeline: read the FP32 graph's clsx metadata (its preprocessing) -> choose a seeded calibration
sample and a disjoint held-out evaluation split -> ``quant_pre_process`` -> collect tensor ranges
in bounded chunks, and the per-channel input means bias correction needs (or reuse a calibration
cache) -> ``quantize_static`` in the target's layout (``tensorrt``: TensorRT explicit quantization;
``cpu``: ONNX Runtime's fused CPU kernels) -> bias correction -> compare INT8 with FP32 on the
held-out images (top-1 agreement, FP32 top-1 within INT8 top-5) -> optionally keep the most
sensitive layers in float until ``min_top1`` holds -> write the graph with its metadata (the
calibration summary and agreement figures inside) atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clsx._optional import require
from clsx.agreement import Agreement, compare
from clsx.calib import cache as calib_cache
from clsx.calib.bias_correction import weight_shifts
from clsx.calib.quantize import TARGETS, QuantConfig, QuantizationError, check_quantizable, collect_ranges, graph_problems, prepare, quantizable_nodes, quantize
from clsx.calib.reader import BatchStream, CalibrationDataError, OrtCalibrationReader, split_images
from clsx.errors import GateFailedError, OutputExistsError, SpecError
from clsx.metadata import embed_in_onnx, read_onnx_metadata, spec_of, write_sidecar
from clsx.spec import ModelSpec, PreprocessOverrides, PreprocessSpec, resolve_preprocess
from clsx.zoo.weights import file_sha256

log = logging.getLogger(__name__)

__all__ = ["calibrate", "CalibResult", "QuantConfig", "QuantizationError", "CalibrationDataError", "TARGETS"]


@dataclass
class CalibResult:
    path: Path
    metadata: dict[str, Any]
    before: Agreement | None  # every quantizable layer in INT8
    after: Agreement | None  # the written graph
    float_layers: list[str] = field(default_factory=list)
    calibration_images: int = 0
    bad_images: int = 0
    used_cache: bool = False
    seconds: float = 0.0


def default_output(model_path: Path) -> Path:
    stem = model_path.name[: -len(".onnx")] if model_path.name.endswith(".onnx") else model_path.name
    for suffix in (".fp32", ".fp16"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return model_path.with_name(f"{stem}.int8.onnx")


def _model_spec(model_path: Path, overrides: PreprocessOverrides | None) -> tuple[ModelSpec, dict[str, Any] | None]:
    doc = read_onnx_metadata(model_path)
    if doc is not None:
        spec = spec_of(doc)
        if doc.get("precision") not in (None, "fp32"):
            state = "already quantized (int8)" if doc["precision"] == "int8" else f"an {doc['precision']} graph"
            raise QuantizationError(f"{model_path} is {state}; calibrate the FP32 graph")
        if overrides is not None and overrides.as_dict():
            spec = ModelSpec(**{**spec.__dict__, "preprocess": resolve_preprocess(spec.preprocess, overrides)})
        return spec, doc
    given = overrides.as_dict() if overrides is not None else {}
    missing = [flag for flag, key in (("--input-size", "input_size"), ("--mean", "mean"), ("--std", "std")) if key not in given]
    if missing:
        raise SpecError(f"{model_path} has no clsx metadata, so its preprocessing is unknown: pass {', '.join(missing)}")
    pre = resolve_preprocess(PreprocessSpec(), overrides)
    return ModelSpec(name=model_path.stem, source="onnx", num_classes=0, preprocess=pre), None


def _logits(model_path: Path, batches: list[np.ndarray]) -> np.ndarray:
    import clsx

    with clsx.open(model_path, backend="onnxrt") as rt:
        return np.concatenate([rt.run(b) for b in batches])


def calibrate(
    model_path: str | Path,
    images: str | Path,
    out: str | Path | None = None,
    *,
    method: str = "minmax",
    target: str = "tensorrt",
    bias_correction: bool = True,
    reduce_range: bool = False,
    num: int = 512,
    batch: int = 16,
    seed: int = 0,
    cache: str | Path | None = None,
    eval_dir: str | Path | None = None,
    eval_num: int = 64,
    min_top1: float | None = None,
    max_float_layers: int | None = None,
    preprocess: PreprocessOverrides | None = None,
    force: bool = False,
) -> CalibResult:
    """Calibrate ``model_path`` (FP32 ONNX) on ``images`` and write the INT8 Q/DQ graph to ``out``.

    ``target``: ``tensorrt`` (default; the layout TensorRT's parser accepts, also run by ONNX Runtime)
    or ``cpu`` (ONNX Runtime's fast CPU layout; TensorRT rejects it). ``min_top1``: the accuracy gate.
    """
    t0 = time.perf_counter()
    model_path = Path(model_path)
    if not model_path.is_file():
        raise SpecError(f"{model_path}: no such ONNX file")
    if num < 1 or batch < 1:
        raise SpecError("--num and --batch must be at least 1")
    if min_top1 is not None and not 0 < min_top1 <= 1:
        raise SpecError(f"--min-top1 must be in (0, 1]; got {min_top1}")
    config = QuantConfig(method=method, target=target, bias_correction=bias_correction, reduce_range=reduce_range)
    out_path = Path(out) if out is not None else default_output(model_path)
    if out_path.exists() and not force:
        raise OutputExistsError(f"{out_path} exists; pass --force to overwrite it")
    if not out_path.parent.is_dir() or not os.access(out_path.parent, os.W_OK):
        raise SpecError(f"cannot write {out_path}: folder missing or not writable")

    spec, parent_doc = _model_spec(model_path, preprocess)
    check_quantizable(model_path)
    split = split_images(Path(images), num, seed=seed, eval_dir=Path(eval_dir) if eval_dir else None, eval_num=eval_num)
    parent_sha = file_sha256(model_path)
    key = calib_cache.CacheKey(parent_sha, method, target, split.calibration_digest(), len(split.calibration))
    cache_path = Path(cache) if cache is not None else None

    with tempfile.TemporaryDirectory(prefix="clsx-calib-") as tmp:
        work = Path(tmp)
        prepared = prepare(model_path, work / "prepared.onnx")
        input_name = _input_name(prepared)
        ort_ranges = work / "ranges.json"
        used_cache, bad, used = False, 0, len(split.calibration)
        means: dict[str, np.ndarray] = {}
        if cache_path is not None and cache_path.exists():
            cached_ranges, means = calib_cache.load(cache_path, key)
            calib_cache.write_ort_ranges(cached_ranges, ort_ranges)
            used_cache = True
            log.info("reusing calibration ranges from %s (no calibration pass)", cache_path)
        else:
            stream = BatchStream(split.calibration, spec.preprocess, batch)
            log.info("calibrating (%s) on %d images from %s, batch %d", method, len(split.calibration), images, batch)
            with _Progress("calibrating", len(split.calibration)) as progress:
                reader = OrtCalibrationReader(stream, input_name, on_batch=progress.advance)
                ranges, means = collect_ranges(prepared, reader, config, work)
            bad, used = len(stream.bad), len(stream.good)
            if bad:
                log.warning("%d of %d calibration images could not be decoded and were skipped", bad, len(split.calibration))
            if used == 0:
                raise CalibrationDataError(f"none of the {len(split.calibration)} calibration images could be decoded")
            require("onnxruntime.quantization.calibrate").save_tensors_data(ranges, ort_ranges)
            if cache_path is not None:
                calib_cache.save(cache_path, key, ranges, means)
                log.info("saved calibration ranges to %s", cache_path)

        int8 = quantize(prepared, work / "int8_plain.onnx", ort_ranges, config)
        shifts = weight_shifts(prepared, int8, means) if config.bias_correction else {}
        if shifts:
            log.info("bias correction: %d layers", len(shifts))
            int8 = quantize(prepared, work / "int8.onnx", ort_ranges, config, bias_shifts=shifts)
        eval_stream = BatchStream(split.evaluation, spec.preprocess, batch)
        eval_batches = list(eval_stream)
        before = after = None
        float_layers: list[str] = []
        if eval_batches:
            ref = _logits(model_path, eval_batches)
            before = after = compare(ref, _logits(int8, eval_batches))
            _log_agreement("INT8 (all layers)", before)
            if min_top1 is not None and before.top1 < min_top1:
                int8, after, float_layers = _fallback(prepared, int8, ref, eval_batches, input_name, ort_ranges, config,
                                                     shifts, min_top1, max_float_layers, work)
        else:
            log.warning("no held-out evaluation images: INT8 agreement not measured")

        problems = graph_problems(int8) if target == "tensorrt" else []
        if problems:  # a bug: the settings above must never produce these
            raise RuntimeError(f"quantized graph is not TensorRT-compatible: {problems[:3]}")
        doc = _int8_document(spec, parent_doc, parent_sha, config, seed, split, used, bad, used_cache, before, after, float_layers,
                             min_top1, len(shifts))
        missed = min_top1 is not None and (after is None or after.top1 < min_top1)
        final = out_path.with_name(out_path.name.replace(".onnx", ".FAILED.onnx")) if missed else out_path
        _write(int8, final, doc)
    result = CalibResult(final, doc, before, after, float_layers, used, bad, used_cache, time.perf_counter() - t0)
    log.info("wrote %s (%.1f s)", final, result.seconds)
    if missed:
        got = f"{after.top1:.1%}" if after else "unmeasured"
        raise GateFailedError(f"INT8 top-1 agreement {got} is below --min-top1 {min_top1:.1%} even with "
                              f"{len(float_layers)} layers kept in float; wrote {final} for inspection")
    return result


def _input_name(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if len(names) != 1:
        raise QuantizationError(f"expected one image input, the graph has {names}")
    return names[0]


def _fallback(prepared, int8, ref, eval_batches, input_name, ort_ranges, config, shifts, min_top1, max_float_layers, work):
    """Keep the most sensitive layers in float (1, 2, 4, ... of them) until the gate holds or the limit."""
    from dataclasses import replace

    from clsx.calib.sensitivity import rank_layers

    candidates = quantizable_nodes(prepared)
    limit = max_float_layers if max_float_layers is not None else max(4, len(candidates) // 4)
    ranking_graph = int8
    if config.target != "tensorrt":  # rank on the layout where each layer's Q/DQ is its own
        ranking_graph = quantize(prepared, work / "int8_ranking.onnx", ort_ranges, replace(config, target="tensorrt", reduce_range=False),
                                 bias_shifts=shifts)
    ranked = rank_layers(prepared, ranking_graph, eval_batches[:1], input_name, candidates)
    log.info("most sensitive layers (output SQNR with only that layer in INT8, dB): %s",
             ", ".join(f"{n} {d:.1f}" for n, d in ranked[:6]))
    after, kept = None, []
    k = 1
    while True:
        kept = [name for name, _ in ranked[: min(k, limit)]]
        trial = quantize(prepared, work / f"int8_keep{len(kept)}.onnx", ort_ranges, config, exclude=kept, bias_shifts=shifts)
        after = compare(ref, _logits(trial, eval_batches))
        _log_agreement(f"INT8 with {len(kept)} layers in float", after)
        int8 = trial
        if after.top1 >= min_top1 or len(kept) >= min(limit, len(ranked)):
            break
        k *= 2
    return int8, after, kept


def _log_agreement(what: str, a: Agreement) -> None:
    log.info("%s vs FP32 on %d held-out images: top-1 agreement %.1f%%, FP32 top-1 in INT8 top-5 %.1f%%",
             what, a.images, 100 * a.top1, 100 * a.ref_top1_in_topk)


_LAYOUTS = {
    "tensorrt": "QDQ int8 on weighted-layer inputs, symmetric, per-channel weights, float bias (TensorRT explicit quantization)",
    "cpu": "QDQ uint8 activations (asymmetric) / int8 per-channel weights, int32 bias (ONNX Runtime CPU; not TensorRT-compatible)",
}


def _int8_document(spec, parent_doc, parent_sha, config, seed, split, used, bad, used_cache, before, after, float_layers,
                   min_top1, corrected):
    from clsx.metadata import make_document

    base = parent_doc or make_document(spec, artifact="onnx", precision="fp32", inputs=[], outputs=[])
    doc = {**base, "precision": "int8", "parent_sha256": parent_sha}
    doc["calibration"] = {
        "method": config.method,
        "target": config.target,
        "format": _LAYOUTS[config.target],
        "reduce_range": config.reduce_range,
        "bias_corrected_layers": corrected,
        "images": used,
        "bad_images": bad,
        "seed": seed,
        "from_cache": used_cache,
        "eval_images": before.images if before else 0,
        "top1_agreement_all_int8": before.top1 if before else None,
        "fp32_top1_in_int8_top5_all_int8": before.ref_top1_in_topk if before else None,
        "top1_agreement": after.top1 if after else None,
        "fp32_top1_in_int8_top5": after.ref_top1_in_topk if after else None,
        "float_layers": float_layers,
        "min_top1": min_top1,
    }
    return doc


def _write(src: Path, final: Path, doc: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(src))
    embed_in_onnx(model, doc)
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    write_sidecar(final, doc)


class _Progress:
    """A rich progress bar on stderr when it is a terminal; otherwise nothing (logs say the rest)."""

    def __init__(self, what: str, total: int) -> None:
        self._what, self._total = what, total
        self._bar = None

    def __enter__(self) -> "_Progress":
        import sys

        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self._what, total=self._total)
        return self

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
