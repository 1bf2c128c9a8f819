"""The calibration job behind :func:`clsx.calib.calibrate` (``clsx calib``), step by step.

1. :func:`_request`: check the paths, refuse to overwrite, read the FP32 graph's spec, choose the
   calibration sample and the held-out split, derive the calibration cache key.
2. :func:`_ranges`: collect tensor ranges and bias-correction means in bounded chunks, or load
   them from the calibration cache.
3. :func:`_quantize`: ``quantize_static`` in the target's layout, then bias correction.
4. :func:`_evaluate`: INT8 against FP32 on the held-out images; below ``min_top1``,
   :func:`_fallback` keeps the most sensitive layers in float.
5. :func:`_publish`: the metadata document and the exclusive write of graph and sidecar.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clsx.calib import cache as calib_cache
from clsx.calib.bias_correction import weight_shifts
from clsx.calib.quantize import (QuantConfig, QuantizationError, boundary_layers, check_quantizable, collect_ranges,
                                 graph_problems, parse_keep_float, prepare, quantizable_nodes, quantize, unquantized_layers)
from clsx.calib.reader import BatchStream, CalibrationDataError, ImageSplit, OrtCalibrationReader, split_images
from clsx.core.agreement import Agreement, compare, wilson_interval
from clsx.core.artifact import checked_onnx
from clsx.core.errors import GateFailedError, SpecError
from clsx.core.files import OutputSet, check_writable, output_path, refuse_existing, sha256_file
from clsx.core.graph_io import GraphIO, read_graph_io
from clsx.core.metadata import (check_graph_input, dumps, embed_in_onnx, is_partial, onnx_input_shape_of,
                                 read_metadata_or_graph, sidecar_path, spec_of)
from clsx.core.optional import require
from clsx.core.progress import Phase, Progress
from clsx.core.spec import ModelSpec, PreprocessOverrides, resolve_preprocess

log = logging.getLogger(__name__)


#: default --keep-sensitive (see CalibOptions.keep_sensitive)
KEEP_SENSITIVE = 4
#: --keep-sensitive keeps at most one in this many quantizable layers float
SENSITIVE_SHARE = 8


@dataclass(frozen=True)
class CalibOptions:
    """What ``clsx calib``'s flags choose; validated on construction (:class:`SpecError`, or
    :class:`QuantizationError` for the method / target / reduce-range combination)."""

    method: str = "minmax"
    target: str = "tensorrt"
    bias_correction: bool = True
    reduce_range: bool = False
    num: int = 512
    batch: int = 16
    seed: int = 0
    cache: str | Path | None = None
    eval_dir: str | Path | None = None
    eval_num: int = 64
    min_top1: float | None = None
    max_float_layers: int | None = None
    preprocess: PreprocessOverrides | None = None
    preset: str | None = None  # a graph clsx did not make: a known model's preprocessing and labels
    labels: str | Path | None = None  # ... and its class names
    #: weighted layers kept in float on purpose (common TensorRT practice): "last" (the classifier writing the
    #: logits; the default), "first" (the stem reading the image); a string "first,last" / "none" or a sequence
    keep_float: str | Sequence[str] = ("last",)
    #: also keep in float the N weighted layers whose INT8 alone costs the logits most, ranked on calibration
    #: images (:mod:`clsx.calib.sensitivity`), at most one in eight of the quantizable layers; 0: none; None:
    #: the target's default, :data:`KEEP_SENSITIVE` for tensorrt (chosen by benchmarks/int8_peers.py: lite1
    #: 85.3 -> 93.6 %, lite0 91.2 -> 94.1 %), 0 for cpu (its uint8 layout is already ahead; not chosen by measurement)
    keep_sensitive: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_float", parse_keep_float(self.keep_float))
        if self.num < 1 or self.batch < 1:
            raise SpecError("--num and --batch must be at least 1")
        if self.sensitive_layers < 0:
            raise SpecError(f"--keep-sensitive must be 0 or more; got {self.keep_sensitive}")
        if self.min_top1 is not None and not 0 < self.min_top1 <= 1:
            raise SpecError(f"--min-top1 must be in (0, 1]; got {self.min_top1}")
        self.quant_config()  # method and target known, --reduce-range only for cpu

    @property
    def sensitive_layers(self) -> int:
        """``keep_sensitive``, or the target's default when it is None."""
        if self.keep_sensitive is not None:
            return self.keep_sensitive
        return KEEP_SENSITIVE if self.target == "tensorrt" else 0

    def quant_config(self) -> QuantConfig:
        return QuantConfig(method=self.method, target=self.target, bias_correction=self.bias_correction,
                           reduce_range=self.reduce_range)

    def replace(self, **fields: Any) -> "CalibOptions":
        """A copy with ``fields`` changed; a name that is not an option is a :class:`TypeError`."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown calibration option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **fields) if fields else self


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


@dataclass(frozen=True)
class _Request:
    """The checked request: everything known before the graph is touched."""

    model_path: Path
    images: str | Path  # as given (the log names it so)
    out_path: Path
    options: CalibOptions
    config: QuantConfig
    spec: ModelSpec
    parent_doc: dict[str, Any] | None
    parent_sha: str
    split: ImageSplit
    key: calib_cache.CacheKey
    force: bool
    graph: GraphIO  # what the FP32 graph says: input format, fixed batch, outputs

    def stream(self, paths: Sequence[Path], *, calibration: bool) -> BatchStream:
        """Batches in the graph's input format; a fixed-batch graph gets batches of its size (calibration
        batches filled up: ONNX Runtime feeds them to the graph as they are)."""
        fixed = self.graph.batch
        return BatchStream(paths, self.spec.preprocess, fixed or self.options.batch, fmt=self.graph.format,
                           fill=calibration and fixed is not None)

    @property
    def cache_path(self) -> Path | None:
        return Path(self.options.cache) if self.options.cache is not None else None


@dataclass(frozen=True)
class _Ranges:
    """Calibration ranges in ONNX Runtime's file format, the bias-correction means and the image counts."""

    path: Path
    means: dict[str, np.ndarray]
    used: int
    bad: int
    from_cache: bool


@dataclass(frozen=True)
class _Job:
    """A request in progress inside its work folder."""

    request: _Request
    work: Path
    prepared: Path  # the graph after quant_pre_process
    input_name: str
    ranges: _Ranges
    shifts: dict[str, np.ndarray] = field(default_factory=dict)  # bias correction per node
    kept: tuple[str, ...] = ()  # layers kept in float on purpose (``keep_float``)

    @property
    def config(self) -> QuantConfig:
        return self.request.config

    def quantize(self, name: str, config: QuantConfig | None = None, *, exclude: Sequence[str] = ()) -> Path:
        """The Q/DQ graph ``work/name`` from the job's ranges and bias shifts; ``kept`` layers always stay float."""
        return quantize(self.prepared, self.work / name, self.ranges.path, config or self.config,
                        exclude=list(dict.fromkeys([*self.kept, *exclude])), bias_shifts=self.shifts)


@dataclass(frozen=True)
class _Outcome:
    """The graph to write and how it agrees with FP32."""

    graph: Path
    before: Agreement | None
    after: Agreement | None
    float_layers: list[str] = field(default_factory=list)

    def missed(self, min_top1: float | None) -> bool:
        """The gate judges the lower bound of the 95 % interval, not the point estimate."""
        return min_top1 is not None and (self.after is None or self.after.top1_low < min_top1)


def default_output(model_path: Path) -> Path:
    stem = model_path.name[: -len(".onnx")] if model_path.name.endswith(".onnx") else model_path.name
    for suffix in (".fp32", ".fp16"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return model_path.with_name(f"{stem}.int8.onnx")


def calibrate(
    model_path: str | Path,
    images: str | Path,
    out: str | Path | None = None,
    options: CalibOptions | None = None,
    *,
    force: bool = False,
    **fields: Any,
) -> CalibResult:
    """Calibrate ``model_path`` (FP32 ONNX) on ``images`` and write the INT8 Q/DQ graph to ``out`` (a file,
    or a folder for ``<stem>.int8.onnx``: an existing one, or a string ending in ``/`` to create; default:
    beside the model).

    ``options`` (default :class:`CalibOptions()`); keyword ``fields`` are :class:`CalibOptions`
    fields that override it, e.g. ``calibrate(p, imgs, method="entropy", num=8)``.
    ``target``: ``tensorrt`` (default; the layout TensorRT's parser accepts, also run by ONNX Runtime)
    or ``cpu`` (ONNX Runtime's fast CPU layout; TensorRT rejects it). ``min_top1``: the accuracy gate.
    """
    t0 = time.perf_counter()
    options = (options if options is not None else CalibOptions()).replace(**fields)
    req = _request(Path(model_path), images, out, options, force)
    with tempfile.TemporaryDirectory(prefix="clsx-calib-") as tmp:
        work = Path(tmp)
        prepared = prepare(req.model_path, work / "prepared.onnx")
        input_name = _input_name(prepared)
        kept = tuple(boundary_layers(prepared, options.keep_float))
        job = _Job(req, work, prepared, input_name, _ranges(req, prepared, input_name, work), kept=kept)
        with Phase("quantizing", log):
            plain = job.quantize("int8_plain.onnx")
            job, int8 = _bias_correct(job, plain)
            if options.sensitive_layers:
                job, int8 = _keep_sensitive(job, int8, options.sensitive_layers)
        _check_coverage(job, int8, job.kept)
        with Phase("evaluating INT8 against FP32", log):
            outcome = _evaluate(job, int8)
        final, doc = _publish(job, outcome)
    ranges = job.ranges
    result = CalibResult(final, doc, outcome.before, outcome.after, outcome.float_layers, ranges.used, ranges.bad,
                         ranges.from_cache, time.perf_counter() - t0)
    log.info("wrote %s (%.1f s)", final, result.seconds)
    if outcome.missed(options.min_top1):
        got = (f"{outcome.after.describe_top1()}: its lower bound" if outcome.after
               else "unmeasured (no held-out images)")
        raise GateFailedError(f"INT8 top-1 agreement {got} is below --min-top1 {options.min_top1:.1%} even with "
                              f"{len(outcome.float_layers)} layers kept in float; wrote {final} for inspection")
    return result


def _request(model_path: Path, images: str | Path, out: str | Path | None, options: CalibOptions, force: bool) -> _Request:
    """Check the model and output paths, read the model's spec, split the images."""
    if not model_path.exists():
        raise SpecError(f"{model_path}: no such ONNX file")
    checked_onnx(model_path)  # its external data inside its folder, before anything reads the graph
    out_path = output_path(out, default_output(model_path).name) if out is not None else default_output(model_path)
    refuse_existing([out_path, sidecar_path(out_path)], force=force)
    check_writable(out_path)
    if options.cache is not None and not os.path.lexists(options.cache):  # written after calibrating
        check_writable(options.cache, what="the calibration cache")

    graph = read_graph_io(model_path)  # one line for an input clsx cannot feed
    spec, parent_doc = _model_spec(model_path, options)
    check_quantizable(model_path)
    eval_dir = Path(options.eval_dir) if options.eval_dir else None
    split = split_images(Path(images), options.num, seed=options.seed, eval_dir=eval_dir, eval_num=options.eval_num)
    parent_sha = sha256_file(model_path)
    key = calib_cache.CacheKey(parent_sha, options.method, options.target, split.calibration_digest(), len(split.calibration))
    return _Request(model_path, images, out_path, options, options.quant_config(), spec, parent_doc, parent_sha, split,
                    key, force, graph)


def _model_spec(model_path: Path, options: CalibOptions) -> tuple[ModelSpec, dict[str, Any] | None]:
    """The FP32 graph's spec and document: its own, or (a graph clsx did not make) the one its signature
    gives, completed from ``--preset``/flags/``--labels`` (:func:`clsx.runtimes.foreign.spec_for_graph`)."""
    overrides = options.preprocess
    doc = read_metadata_or_graph(model_path)
    if is_partial(doc):
        from clsx.runtimes.foreign import completed_document, spec_for_graph

        spec = spec_for_graph(doc, where=str(model_path), preset=options.preset, overrides=overrides, labels=options.labels)
        if doc.get("precision") not in (None, "fp32"):
            raise QuantizationError(f"{model_path} is an {doc['precision']} graph; calibrate the FP32 graph")
        return spec, completed_document(doc, spec, preset=options.preset)
    if options.preset:
        log.warning("%s carries clsx metadata: --preset %s is not used", model_path, options.preset)
    spec = spec_of(doc)
    if doc.get("precision") not in (None, "fp32"):
        state = "already quantized (int8)" if doc["precision"] == "int8" else f"an {doc['precision']} graph"
        raise QuantizationError(f"{model_path} is {state}; calibrate the FP32 graph")
    if overrides is not None and overrides.as_dict():
        spec = ModelSpec(**{**spec.__dict__, "preprocess": resolve_preprocess(spec.preprocess, overrides)})
        layout = ((doc.get("inputs") or [{}])[0].get("layout")) or "NCHW"
        check_graph_input(spec.preprocess.input_size, onnx_input_shape_of(model_path), where=str(model_path),
                          says="the preprocessing flags give", layout=layout)  # before an image is decoded at that size
    return spec, doc


def _input_name(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if len(names) != 1:
        raise QuantizationError(f"expected one image input, the graph has {names}")
    return names[0]


def _ranges(req: _Request, prepared: Path, input_name: str, work: Path) -> _Ranges:
    """Load the ranges from the calibration cache when it exists; otherwise calibrate (and fill the cache)."""
    ort_ranges = work / "ranges.json"
    calibration = req.split.calibration
    cache_path = req.cache_path
    if cache_path is not None and cache_path.exists():
        cached_ranges, means = calib_cache.load(cache_path, req.key, prepared)
        calib_cache.write_ort_ranges(cached_ranges, ort_ranges)
        log.info("reusing calibration ranges from %s (no calibration pass)", cache_path)
        return _Ranges(ort_ranges, means, len(calibration), 0, True)

    req.split.warn_if_small()
    stream = req.stream(calibration, calibration=True)
    batch = stream.batch_size
    log.info("calibrating (%s) on %d images from %s, batch %d%s", req.config.method, len(calibration), req.images, batch,
             " (the graph's fixed batch)" if req.graph.batch is not None else "")
    with Progress("calibrating", total=len(calibration)) as progress:
        reader = OrtCalibrationReader(stream, input_name, on_batch=progress.advance)
        ranges, means = collect_ranges(prepared, reader, req.config, work)
    bad, used = len(stream.bad), len(stream.good)
    if bad:
        log.warning("%d of %d calibration images could not be decoded and were skipped", bad, len(calibration))
    if used == 0:
        raise CalibrationDataError(f"none of the {len(calibration)} calibration images could be decoded")
    require("onnxruntime.quantization.calibrate").save_tensors_data(ranges, ort_ranges)
    if cache_path is not None:
        calib_cache.save(cache_path, req.key, ranges, means)
        log.info("saved calibration ranges to %s", cache_path)
    return _Ranges(ort_ranges, means, used, bad, False)


def _bias_correct(job: _Job, plain: Path) -> tuple[_Job, Path]:
    """Shift float biases for the mean error of INT8 weight rounding and requantize; the job gains the shifts."""
    shifts = weight_shifts(job.prepared, plain, job.ranges.means) if job.config.bias_correction else {}
    if not shifts:
        return job, plain
    log.info("bias correction: %d layers", len(shifts))
    job = dataclasses.replace(job, shifts=shifts)
    return job, job.quantize("int8.onnx")


def _keep_sensitive(job: _Job, int8: Path, count: int) -> tuple[_Job, Path]:
    """Keep in float the ``count`` layers (at most one in :data:`SENSITIVE_SHARE` of the quantizable ones) whose
    INT8 alone lowers the output SQNR most, ranked on (up to two batches of) the calibration images, never on the
    held-out ones the agreement is measured on. Symmetric int8 (TensorRT's only activation format) leaves a few
    layers (early depthwise convolutions on ReLU6 outputs) most of a network's quantization noise."""
    from clsx.calib.sensitivity import rank_layers

    req = job.request
    candidates = [n for n in quantizable_nodes(job.prepared) if n not in job.kept]
    count = min(count, len(candidates) // SENSITIVE_SHARE)
    if count == 0:
        log.debug("--keep-sensitive: %d quantizable layers, too few to keep one in %d float", len(candidates), SENSITIVE_SHARE)
        return job, int8
    batches = list(itertools.islice(iter(req.stream(req.split.calibration, calibration=True)), 2))
    ranking_graph = int8
    if job.config.target != "tensorrt":  # rank on the layout where each layer's Q/DQ is its own
        ranking_graph = job.quantize("int8_ranking.onnx", dataclasses.replace(job.config, target="tensorrt", reduce_range=False))
    ranked = rank_layers(job.prepared, ranking_graph, batches, job.input_name, candidates)
    chosen = [name for name, _ in ranked[:count]]
    log.info("kept in float as the most sensitive (output SQNR with only that layer in INT8, dB): %s",
             ", ".join(f"{n} {d:.1f}" for n, d in ranked[:count]))
    job = dataclasses.replace(job, kept=(*job.kept, *chosen))
    return job, job.quantize("int8_sensitive.onnx")


def _check_coverage(job: _Job, int8: Path, kept_float: Sequence[str]) -> None:
    """An INT8 graph with fewer weighted layers quantized than asked is a failed gate, never a silent no-op."""
    missing = unquantized_layers(job.prepared, int8, kept_float)
    if not missing:
        return
    total = len(quantizable_nodes(job.prepared)) + sum(why == "it computes a shape" for why in missing.values())
    reasons: dict[str, list[str]] = {}
    for name, why in missing.items():
        reasons.setdefault(why, []).append(name)
    said = "; ".join(f"{len(names)} because {why} (e.g. {names[0]})" for why, names in reasons.items())
    raise GateFailedError(f"only {total - len(kept_float) - len(missing)} of the {total - len(kept_float)} weighted layers "
                          f"asked for are quantized: {len(missing)} stayed in float, {said}; nothing written")


def _logits(model_path: Path, batches: list[np.ndarray]) -> np.ndarray:
    import clsx

    with clsx.open(model_path, backend="onnxrt") as rt:
        return np.concatenate([rt.run(b) for b in batches])


def _evaluate(job: _Job, int8: Path) -> _Outcome:
    """INT8 vs FP32 on the held-out images; below ``min_top1``, the float fallback."""
    req = job.request
    eval_batches = list(req.stream(req.split.evaluation, calibration=False))
    if not eval_batches:
        log.warning("no held-out evaluation images: INT8 agreement not measured")
        return _Outcome(int8, None, None)
    ref = _logits(req.model_path, eval_batches)
    before = compare(ref, _logits(int8, eval_batches))
    kept = f"{len(job.kept)} layer{'s' if len(job.kept) != 1 else ''} kept float on purpose" if job.kept else "all layers"
    _log_agreement(f"INT8 ({kept})", before)
    min_top1 = req.options.min_top1
    if min_top1 is not None:
        _warn_if_too_few(before.images, min_top1)
    if min_top1 is not None and before.top1_low < min_top1:
        return _fallback(job, int8, before, ref, eval_batches)
    return _Outcome(int8, before, before)


def _fallback(job: _Job, int8: Path, before: Agreement, ref: np.ndarray, eval_batches: list[np.ndarray]) -> _Outcome:
    """Keep the most sensitive layers in float (1, 2, 4, ... of them) until the gate holds or the limit."""
    from clsx.calib.sensitivity import rank_layers

    min_top1, max_float_layers = job.request.options.min_top1, job.request.options.max_float_layers
    candidates = [n for n in quantizable_nodes(job.prepared) if n not in job.kept]
    limit = max_float_layers if max_float_layers is not None else max(4, len(candidates) // 4)
    ranking_graph = int8
    if job.config.target != "tensorrt":  # rank on the layout where each layer's Q/DQ is its own
        ranking_graph = job.quantize("int8_ranking.onnx", dataclasses.replace(job.config, target="tensorrt", reduce_range=False))
    ranked = rank_layers(job.prepared, ranking_graph, eval_batches[:1], job.input_name, candidates)
    log.info("most sensitive layers (output SQNR with only that layer in INT8, dB): %s",
             ", ".join(f"{n} {d:.1f}" for n, d in ranked[:6]))
    k = 1
    while True:
        kept = [name for name, _ in ranked[: min(k, limit)]]
        int8 = job.quantize(f"int8_keep{len(kept)}.onnx", exclude=kept)
        after = compare(ref, _logits(int8, eval_batches))
        _log_agreement(f"INT8 with {len(kept)} layers in float", after)
        if after.top1_low >= min_top1 or len(kept) >= min(limit, len(ranked)):
            return _Outcome(int8, before, after, kept)
        k *= 2


def _warn_if_too_few(n: int, min_top1: float) -> None:
    """Even n agreements out of n have a lower bound below 1: say when the gate cannot pass at this n."""
    best = wilson_interval(n, n)[0]  # n / (n + z^2)
    if best < min_top1:
        need = (f"it needs at least {math.ceil(1.96 ** 2 * min_top1 / (1 - min_top1))} images (--eval-num, --eval-dir)"
                if min_top1 < 1 else "no finite evaluation set can pass --min-top1 1.0")
        log.warning("--min-top1 %.1f%% is judged on the 95%% lower bound: with %d held-out images even %d/%d agreement "
                    "bounds it at %.1f%%; %s", 100 * min_top1, n, n, n, 100 * best, need)


def _log_agreement(what: str, a: Agreement) -> None:
    log.info("%s vs FP32 on %d held-out images: top-1 agreement %s, FP32 top-1 in INT8 top-5 %.1f%%",
             what, a.images, a.describe_top1(), 100 * a.ref_top1_in_topk)


def _publish(job: _Job, outcome: _Outcome) -> tuple[Path, dict[str, Any]]:
    """Write the graph with its metadata: to the output, or beside it as ``*.FAILED.onnx`` when the gate missed."""
    req = job.request
    problems = graph_problems(outcome.graph) if req.config.target == "tensorrt" else []
    if problems:  # a bug: the settings above must never produce these
        raise RuntimeError(f"quantized graph is not TensorRT-compatible: {problems[:3]}")
    if not _has_qdq(outcome.graph):
        log.warning("%s: no layer was quantized (every weighted layer was kept in float): the INT8 graph computes "
                    "in float", req.model_path.name)
    doc = _int8_document(job, outcome)
    missed = outcome.missed(req.options.min_top1)
    final = req.out_path.with_name(req.out_path.name.replace(".onnx", ".FAILED.onnx")) if missed else req.out_path
    _write(outcome.graph, final, doc, force=req.force or missed)  # a FAILED copy is diagnostic: the last one counts
    return final, doc


def _has_qdq(path: Path) -> bool:
    import onnx

    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node)


_LAYOUTS = {
    "tensorrt": "QDQ int8 on weighted-layer inputs, symmetric, per-channel weights, float bias (TensorRT explicit quantization)",
    "cpu": "QDQ uint8 activations (asymmetric) / int8 per-channel weights, int32 bias (ONNX Runtime CPU; not TensorRT-compatible)",
}


def _int8_document(job: _Job, outcome: _Outcome) -> dict[str, Any]:
    from clsx.core.metadata import make_document

    req, config, before, after = job.request, job.config, outcome.before, outcome.after
    base = req.parent_doc or make_document(req.spec, artifact="onnx", precision="fp32", inputs=[], outputs=[])
    doc = {**base, "precision": "int8", "parent_sha256": req.parent_sha}
    if not doc.get("inputs") or not doc.get("outputs"):  # every later command reads them: from the graph itself
        doc.update(inputs=req.graph.inputs(), outputs=req.graph.outputs())
    doc["calibration"] = {
        "method": config.method,
        "target": config.target,
        "format": _LAYOUTS[config.target],
        "reduce_range": config.reduce_range,
        "bias_corrected_layers": len(job.shifts),
        "images": job.ranges.used,
        "bad_images": job.ranges.bad,
        "seed": req.options.seed,
        "from_cache": job.ranges.from_cache,
        "eval_images": before.images if before else 0,
        "top1_agreement_all_int8": before.top1 if before else None,
        "top1_agreement_all_int8_ci95": list(before.top1_interval) if before else None,
        "fp32_top1_in_int8_top5_all_int8": before.ref_top1_in_topk if before else None,
        "top1_agreement": after.top1 if after else None,
        "top1_agreement_count": after.top1_count if after else None,
        "top1_agreement_ci95": list(after.top1_interval) if after else None,
        "gate": "the 95% Wilson lower bound of top1_agreement must reach min_top1",
        "fp32_top1_in_int8_top5": after.ref_top1_in_topk if after else None,
        "float_layers": outcome.float_layers,
        "keep_float": list(req.options.keep_float),
        "keep_sensitive": req.options.sensitive_layers,
        "kept_float_layers": list(job.kept),
        "min_top1": req.options.min_top1,
    }
    return doc


def _write(src: Path, final: Path, doc: dict[str, Any], *, force: bool) -> None:
    """Publish the INT8 graph (``doc`` inside) and its sidecar together."""
    import onnx

    model = onnx.load(str(src))
    embed_in_onnx(model, doc)
    side = sidecar_path(final)
    with OutputSet([final, side], force=force) as out:
        out.write_bytes(final, model.SerializeToString())  # a full disk is one error line, like the sidecar's
        out.write_text(side, dumps(doc))
