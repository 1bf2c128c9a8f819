"""Verification on the spot: does the ONNX graph compute what its reference computes?

Every graph clsx writes is checked right after export, before it gets its final name:

1. ``onnx.checker`` accepts it;
2. ONNX Runtime (CPU) runs it on **real photos** (the 17 that scikit-image and scikit-learn ship;
   the first 8 for random-weight models), preprocessed by :mod:`clsx.core.preprocess` exactly as at
   inference time, and on **random input**;
3. its logits are compared with the reference's on the same tensors: torch for an FP32 export, the
   FP32 graph on ONNX Runtime for an FP16 conversion.

Batch sizes are chosen to exercise the batch axis: with a dynamic batch the photos run as one batch
(17, not the export's example batch of 2) and the random input as a batch of 1.

Tolerances (see :data:`FP32_VS_TORCH`, :data:`FP16_VS_FP32`)
  * logits: ``max |Δlogit| <= rel * logit_scale``, where ``logit_scale`` is the largest absolute
    reference logit of that input set. The tolerance is purely relative because random-weight
    networks produce logits anywhere from 1e-18 to 1e4, and an absolute floor would make the check
    vacuous for the small ones. FP32 vs torch: ``rel = 1e-3``; FP16 vs FP32:
    ``rel = 2.5e-2`` (FP16 keeps 11 significant bits, about 5e-4 relative per rounding, and the
    rounding of every weight and activation adds up over a deep network).
  * agreement, only for real weights: top-1 agreement on the photos must be 100% (FP32) or at least
    99% (FP16). Random-weight networks give near-uniform logits, so their top-k order is noise and
    is reported, never gated.

When an input set misses the logit tolerance, the check asks whether the tolerance is even
attainable there: random-weight networks fed random noise can be numerically chaotic, so that two
correct FP32 evaluations of the same model (torch with a different memory layout, say) differ by
several percent of the logit scale. It then computes that set with the torch model in **float64**
(the truth) and measures the **FP32 noise** of the set: the largest distance to the float64 result
among torch's own FP32 evaluations -- the reference itself, the model run in the other memory layout
(contiguous vs channels_last: different kernels, different summation order), and the model on the
input perturbed by one FP32 ulp (FP32 cannot know the input better than that). The set is accepted
against float64 only if all of these hold:

  * the candidate is at most :data:`FP64_FACTOR` times as far from float64 as that noise (or within
    the tolerance of float64 itself): it is as good an FP32 evaluation as torch's own;
  * another input set (the photos, where networks are well-conditioned) passed the plain logit
    tolerance: a wrong op or wrong weights show on every input, so they fail there, and no set is
    ever accepted on float64 alone;
  * on the photos, the candidate's top-1 agrees with the float64 top-1 at least as often as torch's
    FP32 top-1 does.

Which criterion accepted each set is recorded in :attr:`Verification.criteria` and printed with the
float64 figures: ``tolerance``, ``float64``, or ``ill-conditioned`` (float64, with FP32 noise above
:data:`MAX_REFERENCE_ERROR` of the logit scale: there the set says nothing either way, and the
verdict rests on the other set).

A failed check says which figure missed and the tolerance that would have been needed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from clsx.core.optional import require
from clsx.core.files import first_line
from clsx.core.errors import ClsxError
from clsx.core.spec import FLOAT_NCHW, InputFormat, PreprocessSpec

if TYPE_CHECKING:
    import onnx
    from torch import nn

log = logging.getLogger(__name__)

RANDOM_SEED = 0
#: photos used for random-weight models: only their logits are compared (their top-k order is noise),
#: and 8 photos show that as well as all 17 at half the cost; real-weight models use every photo
RANDOM_WEIGHTS_PHOTOS = 8


def default_photos(real_weights: bool) -> int | None:
    """How many sample photos a verification uses by default (None: all of them)."""
    return None if real_weights else RANDOM_WEIGHTS_PHOTOS
TINY = 1e-30  # logit scale floor: all-zero reference logits leave no room for any difference


@dataclass(frozen=True)
class Tolerance:
    """How close a candidate must be to its reference."""

    rel: float  # max |Δlogit| as a fraction of the reference logit scale
    min_top1: float  # top-1 agreement on photos (gated for real weights only)


FP32_VS_TORCH = Tolerance(rel=1e-3, min_top1=1.0)
FP16_VS_FP32 = Tolerance(rel=2.5e-2, min_top1=0.99)
#: an ONNX graph may be this many times as far from the float64 result as torch's own FP32 evaluations are
FP64_FACTOR = 2.0
#: FP32 noise above this fraction of the logit scale marks a set "ill-conditioned" (recorded as such)
MAX_REFERENCE_ERROR = 0.1
#: relative size of the input perturbation that measures an input set's conditioning: one FP32 ulp
INPUT_ULP = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Probe:
    """The input tensors of a verification: preprocessed photos and random input, NCHW float32 (what
    torch takes); for a graph that takes pixels (``clsx export --input uint8``) also the same inputs as
    uint8 pixels in the graph's layout (``pixels``), whose normalization gives the float sets exactly."""

    photos: np.ndarray
    photo_names: tuple[str, ...]
    random: np.ndarray
    chunk: int | None  # images per run: the static batch, --max-batch, or None for all at once
    pad: bool  # static batch: the last chunk is padded to the full batch size
    pixels: dict[str, np.ndarray] | None = None  # set name -> uint8 batch in the graph's layout

    def sets(self) -> dict[str, np.ndarray]:
        out = {"photos": self.photos} if len(self.photos) else {}
        out["random"] = self.random
        return out

    def feeds(self, graph_dtype: str = "float32") -> dict[str, np.ndarray]:
        """The input sets as a graph whose input is ``graph_dtype`` takes them."""
        if graph_dtype != "uint8":
            return self.sets()
        if self.pixels is None:
            raise ClsxError("this graph takes uint8 pixels but the verification inputs were made for a float graph")
        return {k: self.pixels[k] for k in self.sets()}


_PHOTOS: "OrderedDict[tuple[PreprocessSpec, int | None], Future]" = OrderedDict()
_PHOTOS_LOCK = threading.Lock()
_EXECUTOR: ThreadPoolExecutor | None = None


def _load_photos(pre: PreprocessSpec, limit: int | None) -> tuple[np.ndarray, tuple[str, ...]]:
    from clsx.zoo import samples
    from clsx.core.preprocess import preprocess_batch

    paths = samples.photo_paths()
    if limit is not None:
        paths = paths[:limit]
    batch = preprocess_batch(paths, pre)
    batch.setflags(write=False)
    return batch, tuple(p.name for p in paths)


def _photos(pre: PreprocessSpec, limit: int | None) -> "Future[tuple[np.ndarray, tuple[str, ...]]]":
    """The preprocessed sample photos for ``pre``: computed once per process, in a worker thread."""
    global _EXECUTOR
    key = (pre, limit)
    with _PHOTOS_LOCK:
        if key in _PHOTOS:
            _PHOTOS.move_to_end(key)
            return _PHOTOS[key]
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clsx-photos")
        fut = _PHOTOS[key] = _EXECUTOR.submit(_load_photos, pre, limit)
        while len(_PHOTOS) > 8:
            _PHOTOS.popitem(last=False)
        return fut


def prefetch_photos(pre: PreprocessSpec, photos: int | None = None) -> None:
    """Start decoding and preprocessing the verification photos now (the exporter calls this before
    tracing, which keeps one core busy with Python while Pillow works on the other)."""
    if photos != 0:
        _photos(pre, photos)


def make_probe(pre: PreprocessSpec, *, static_batch: int | None = None, max_batch: int | None = None,
               photos: int | None = None, fmt: InputFormat = FLOAT_NCHW) -> Probe:
    """Photos (all sample photos, or the first ``photos``) plus random input for one model. For a
    graph that takes pixels (``fmt`` uint8) the random input is random pixels, normalized for torch."""
    c, h, w = pre.input_size
    photo_arr = np.zeros((0, c, h, w), np.float32)
    names: tuple[str, ...] = ()
    if photos != 0:
        try:
            photo_arr, names = _photos(pre, photos).result()
        except ClsxError as exc:  # the samples extra is not installed
            log.warning("verifying on random input only: %s", exc)
    n_random = static_batch or (1 if len(photo_arr) else 3)
    rng = np.random.default_rng(RANDOM_SEED)
    chunk = static_batch or max_batch
    if fmt.normalized_on_host:
        random = rng.standard_normal((n_random, c, h, w), dtype=np.float32)
        return Probe(photos=photo_arr, photo_names=names, random=random, chunk=chunk, pad=static_batch is not None)
    from clsx.core.pixel_input import random_pixels
    from clsx.core.preprocess import normalize_pixels

    noise = random_pixels(rng, n_random, (c, h, w), fmt)
    photo_px = _pixels(photo_arr, pre, fmt)
    return Probe(photos=photo_arr, photo_names=names, random=normalize_pixels(noise, pre, fmt.layout), chunk=chunk,
                 pad=static_batch is not None, pixels={"photos": photo_px, "random": noise})


def _pixels(photos: np.ndarray, pre: PreprocessSpec, fmt: InputFormat) -> np.ndarray:
    """The uint8 pixels whose normalization is ``photos`` (exact: normalization is invertible on 0..255),
    in ``fmt``'s layout; checked by normalizing them again."""
    from clsx.core.preprocess import normalize_pixels, pixel_constants

    scale, offset = pixel_constants(pre)
    px = np.rint((photos.astype(np.float64) - offset[None, :, None, None]) / scale[None, :, None, None])
    px = np.clip(px, 0, 255).astype(np.uint8)
    if not np.array_equal(normalize_pixels(px, pre), photos):
        raise ClsxError("internal: the verification photos are not normalized pixels")
    return np.ascontiguousarray(px.transpose(0, 2, 3, 1)) if fmt.layout == "NHWC" else px


_REFERENCE_EXECUTOR: ThreadPoolExecutor | None = None


def torch_reference_in_background(module: "nn.Module", pre: PreprocessSpec, *, static_batch: int | None = None,
                                  max_batch: int | None = None, photos: int | None = None, fmt: InputFormat = FLOAT_NCHW) -> "Future[tuple[Probe, dict[str, np.ndarray]]]":
    """Start computing (probe, torch logits) in a worker thread.

    The exporter runs this while its own modules import (pure Python on one core), so the reference
    forward pass uses the otherwise idle core. The caller must collect the result *before* tracing
    starts: torch.fx and torch.export patch global state that a concurrent forward pass must not see.
    """
    global _REFERENCE_EXECUTOR
    with _PHOTOS_LOCK:
        if _REFERENCE_EXECUTOR is None:
            _REFERENCE_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clsx-reference")

    def job() -> tuple[Probe, dict[str, np.ndarray]]:
        probe = make_probe(pre, static_batch=static_batch, max_batch=max_batch, photos=photos, fmt=fmt)
        return probe, torch_logits(module, probe)

    return _REFERENCE_EXECUTOR.submit(job)


def run_chunked(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, chunk: int | None, pad: bool) -> np.ndarray:
    """``fn`` over ``x`` in chunks of ``chunk`` rows; with ``pad`` the last chunk is filled up to
    ``chunk`` rows (repeating its last row) and the extra outputs dropped."""
    if chunk is None or len(x) <= chunk and not pad:
        return fn(x)
    outs = []
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        n = len(part)
        if pad and n < chunk:
            part = np.concatenate([part, np.repeat(part[-1:], chunk - n, axis=0)])
        outs.append(fn(part)[:n])
    return np.concatenate(outs)


def torch_logits(module: "nn.Module", probe: Probe) -> dict[str, np.ndarray]:
    """The reference: the torch module itself, in eval mode, float32 on CPU."""
    import torch

    fast = [True]

    def forward(t: "torch.Tensor") -> "torch.Tensor":
        # channels_last input: oneDNN's faster convolution path (2x on depthwise nets); models that
        # .view() their activations cannot take it, so they get the plain layout
        if fast[0]:
            try:
                with torch.inference_mode():
                    return module(t.contiguous(memory_format=torch.channels_last))
            except RuntimeError:
                fast[0] = False
        with torch.inference_mode():
            return module(t)

    def fn(x: np.ndarray) -> np.ndarray:
        out = forward(torch.from_numpy(np.array(x, dtype=np.float32, order="C")))  # a writable copy
        if not isinstance(out, torch.Tensor):
            raise ClsxError(f"the model returned {type(out).__name__}, not a logits tensor")
        return out.float().numpy()

    return {k: run_chunked(fn, v, probe.chunk, probe.pad) for k, v in probe.sets().items()}


def torch_fp64_logits(module: "nn.Module", probe: Probe, sets: Sequence[str]) -> dict[str, np.ndarray]:
    """The torch model in float64 on the named input sets (a copy: the caller's model is untouched).
    Empty when the model cannot run in float64."""
    import copy

    import torch

    try:
        m64 = copy.deepcopy(module).double().eval()
    except Exception as exc:  # deepcopy or .double() unsupported by some module
        log.debug("no float64 reference: %s", exc)
        return {}

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return m64(torch.from_numpy(np.array(x, dtype=np.float64))).double().numpy()

    out: dict[str, np.ndarray] = {}
    inputs = probe.sets()
    for name in sets:
        try:
            out[name] = run_chunked(fn, inputs[name], probe.chunk, probe.pad)
        except Exception as exc:
            log.debug("no float64 reference for %s: %s", name, exc)
    return out


def torch_fp32_variants(module: "nn.Module", probe: Probe, sets: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Other correct FP32 evaluations of the torch model on the named input sets: contiguous and
    channels_last memory layouts (different kernels and summation orders) and the input perturbed by
    one FP32 ulp. Their spread around the float64 result is the set's FP32 noise (module docstring).
    A variant the model cannot run is left out."""
    import torch

    rng = np.random.default_rng(RANDOM_SEED + 1)
    inputs = probe.sets()
    out: dict[str, list[np.ndarray]] = {}

    def run(x: np.ndarray, layout: "torch.memory_format") -> np.ndarray:
        def fn(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(np.array(batch, dtype=np.float32)).contiguous(memory_format=layout)).float().numpy()

        return run_chunked(fn, x, probe.chunk, probe.pad)

    for name in sets:
        x = inputs[name]
        nudged = (x * (1 + INPUT_ULP * rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape))).astype(np.float32)
        for data, layout in ((x, torch.contiguous_format), (x, torch.channels_last), (nudged, torch.contiguous_format)):
            try:
                out.setdefault(name, []).append(run(data, layout))
            except Exception as exc:  # e.g. a model that .view()s channels_last activations
                log.debug("FP32 variant skipped for %s: %s", name, exc)
    return out


class OrtRunner:
    """An ONNX Runtime CPU session over serialized model bytes (nothing touches the disk), or over a
    path (a graph with external data: ONNX Runtime finds ``<file>.data`` beside it)."""

    def __init__(self, model_bytes: "bytes | str") -> None:
        ort = require("onnxruntime", purpose="verifying exported graphs")

        so = ort.SessionOptions()
        so.log_severity_level = 3  # errors only; ORT's warnings would clutter clsx's stderr
        self.session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_dtype = "uint8" if first.type == "tensor(uint8)" else "float32"
        self.version = ort.__version__

    def describe(self) -> str:
        return f"onnxruntime {self.version} ({', '.join(self.session.get_providers())})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.uint8 if self.input_dtype == "uint8" else np.float32)
        return self.session.run(None, {self.input_name: x})[0].astype(np.float32)

    def logits(self, probe: Probe) -> dict[str, np.ndarray]:
        return {k: run_chunked(self, v, probe.chunk, probe.pad) for k, v in probe.feeds(self.input_dtype).items()}


def check_graph(model: "bytes | str | onnx.ModelProto") -> str | None:
    """onnx.checker's verdict: None when the graph is valid, else the first line of its complaint.
    Pass serialized bytes where you have them (checking a ModelProto serializes it again), or the
    path of a graph with external data (the checker reads the data file beside it)."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        return first_line(exc)
    return None


@dataclass
class Verification:
    """The figures of one check, JSON-ready through :meth:`to_dict` (stored in the metadata)."""

    reference: str
    candidate: str
    photos: int = 0
    random: int = 0
    max_abs_diff: float = float("nan")  # worst over photos and random input
    photos_max_abs_diff: float | None = None
    random_max_abs_diff: float | None = None
    photos_logit_scale: float | None = None
    random_logit_scale: float | None = None
    rel_tolerance: float = 0.0
    needed_rel_tolerance: float = float("nan")  # what would have passed: max |Δ| / logit scale
    top1: float | None = None  # agreement on photos
    top5: float | None = None  # reference top-1 within the candidate's top-5, on photos
    top5_overlap: float | None = None  # mean Jaccard overlap of the top-5 sets, on photos
    flips: list[str] = field(default_factory=list)  # photos whose top-1 differs
    fp64_check: dict[str, dict[str, float]] = field(default_factory=dict)  # set -> distances to the float64 result
    fp64_top1: dict[str, float] = field(default_factory=dict)  # photos: top-1 agreement with float64 (reference, candidate)
    criteria: dict[str, str] = field(default_factory=dict)  # set -> what accepted it: "tolerance" | "float64"
    missed_sets: list[str] = field(default_factory=list)  # input sets outside the logit tolerance
    agreement_gated: bool = False  # real weights: top-1 agreement is part of the verdict
    min_top1: float = 1.0
    passed: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float) and not np.isfinite(v):
                d[k] = str(v)  # JSON has no nan/inf
        return d

    def summary(self) -> str:
        """One line for stderr: max abs logit difference, top-1/top-5 agreement, verdict."""
        parts = [f"{self.candidate} vs {self.reference}: max |Δlogit| {self.max_abs_diff:.3g}"]
        sets = []
        if self.photos:
            sets.append(f"{self.photos} photos {self.photos_max_abs_diff:.3g} (tolerance {self.rel_tolerance * self.photos_logit_scale:.3g})")
        if self.random:
            sets.append(f"{self.random} random {self.random_max_abs_diff:.3g} (tolerance {self.rel_tolerance * self.random_logit_scale:.3g})")
        for name, how in self.criteria.items():
            d = self.fp64_check.get(name)
            if how != "tolerance" and d:
                sets.append(f"{name}: accepted against float64 (criterion {how}): torch's FP32 noise there is "
                            f"{d['fp32_noise']:.3g}, the candidate {d['candidate_vs_fp64']:.3g} from float64")
        parts.append("[" + "; ".join(sets) + "]")
        if self.top1 is not None:
            n = self.photos
            agree = f"top-1 agreement {round(self.top1 * n)}/{n} ({self.top1:.0%}), top-5 {round(self.top5 * n)}/{n} ({self.top5:.0%})"
            if not self.agreement_gated:
                agree += " (random weights: not gated)"
            parts.append(agree)
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.reasons)
        return ", ".join(parts) + f" -> {verdict}"


def _top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1))) if len(a) else 1.0


def _explained_by_fp32_noise(v: Verification, name: str, ref: dict[str, np.ndarray], cand: dict[str, np.ndarray],
                             exact: dict[str, np.ndarray] | None, variants: dict[str, list[np.ndarray]] | None,
                             tol: float, scale: float) -> str | None:
    """None when set ``name``'s miss is explained by FP32 rounding (module docstring, criteria
    float64 / ill-conditioned), else why not (appended to the failure reason; empty when no float64
    result exists)."""
    if not exact or name not in exact or not np.all(np.isfinite(exact[name])) or not np.all(np.isfinite(cand[name])):
        return ""
    truth = exact[name]
    ref_err = float(np.abs(ref[name].astype(np.float64) - truth).max())
    cand_err = float(np.abs(cand[name].astype(np.float64) - truth).max())
    others = [float(np.abs(o.astype(np.float64) - truth).max()) for o in (variants or {}).get(name, []) if np.all(np.isfinite(o))]
    noise = max([ref_err, *others])
    v.fp64_check[name] = {"reference_vs_fp64": ref_err, "fp32_noise": noise, "fp32_evaluations": 1 + len(others),
                          "candidate_vs_fp64": cand_err}
    figures = f"vs float64: torch fp32 {ref_err:.3g} (FP32 noise {noise:.3g} over {1 + len(others)} evaluations), candidate {cand_err:.3g}"
    if cand_err > max(tol, FP64_FACTOR * noise):
        return f"{figures}; the candidate is more than {FP64_FACTOR:g}x the FP32 noise from float64"
    anchors = [n for n, how in v.criteria.items() if how == "tolerance" and n != name]
    if not anchors:
        return f"{figures}; but no other input set passed the plain tolerance to show the graph computes the model"
    if "photos" in exact and "photos" in cand and len(exact["photos"]):
        ref_top1 = _top1_agreement(ref["photos"], exact["photos"])
        cand_top1 = _top1_agreement(cand["photos"], exact["photos"])
        v.fp64_top1 = {"reference": ref_top1, "candidate": cand_top1}
        if cand_top1 < ref_top1:
            return f"{figures}; on the photos its top-1 agrees with float64 less often ({cand_top1:.0%}) than torch's ({ref_top1:.0%})"
    elif "photos" in ref:
        return f"{figures}; no float64 result on the photos to check top-1 against"
    return None


def compare(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], *, tolerance: Tolerance, real_weights: bool,
            reference: str, candidate: str, photo_names: Sequence[str] = (),
            exact: dict[str, np.ndarray] | None = None,
            variants: dict[str, list[np.ndarray]] | None = None) -> Verification:
    """Judge ``cand`` against ``ref`` (both: input set name -> logits) with ``tolerance``; ``exact``
    (set name -> float64 logits of the same model) and ``variants`` (set name -> other FP32
    evaluations of it) arbitrate sets that miss it (module docstring). Sets that missed and still
    need a float64 judgement are listed in ``missed_sets``."""
    from clsx.core.agreement import compare as agreement

    v = Verification(reference=reference, candidate=candidate, rel_tolerance=tolerance.rel,
                     min_top1=tolerance.min_top1, agreement_gated=real_weights)
    worst, needed = 0.0, 0.0
    pending: list[tuple[str, float, float]] = []
    for name, r in ref.items():
        c = cand[name]
        if r.shape != c.shape:
            v.reasons.append(f"{name}: output shape {tuple(c.shape)} differs from the reference's {tuple(r.shape)}")
            continue
        if not np.all(np.isfinite(r)):
            v.reasons.append(f"{name}: the reference itself produces non-finite logits")
            continue
        scale = max(float(np.abs(r).max()), TINY)
        diff = float(np.abs(r.astype(np.float64) - c.astype(np.float64)).max()) if np.all(np.isfinite(c)) else float("inf")
        setattr(v, f"{name}_max_abs_diff", diff)
        setattr(v, f"{name}_logit_scale", scale)
        setattr(v, name, len(r))
        worst, needed = max(worst, diff), max(needed, diff / scale)
        if diff <= tolerance.rel * scale:
            v.criteria[name] = "tolerance"
        else:
            pending.append((name, diff, scale))
        if name == "photos" and np.all(np.isfinite(c)):
            a = agreement(r, c, topk=5)
            v.top1, v.top5, v.top5_overlap = a.top1, a.ref_top1_in_topk, a.topk_jaccard
            v.flips = [photo_names[i] if i < len(photo_names) else str(i) for i in a.flips]
            if real_weights and a.top1 < tolerance.min_top1:
                v.reasons.append(
                    f"top-1 agreement {a.top1:.1%} on photos < {tolerance.min_top1:.0%} (differs on {', '.join(v.flips[:5])})"
                )
    for name, diff, scale in pending:
        why = _explained_by_fp32_noise(v, name, ref, cand, exact, variants, tolerance.rel * scale, scale)
        if why is None:
            chaotic = v.fp64_check[name]["fp32_noise"] > MAX_REFERENCE_ERROR * scale
            v.criteria[name] = "ill-conditioned" if chaotic else "float64"
            continue
        what = "non-finite logits" if not np.isfinite(diff) else f"max |Δlogit| {diff:.3g}"
        v.reasons.append(
            f"{name}: {what} > tolerance {tolerance.rel * scale:.3g} "
            f"(= {tolerance.rel:g} x logit scale {scale:.3g}; would need rel {diff / scale:.2g}{'; ' + why if why else ''})"
        )
        v.missed_sets.append(name)
    v.max_abs_diff, v.needed_rel_tolerance = worst, needed
    if not ref:
        v.reasons.append("nothing to compare")
    v.passed = not v.reasons
    return v
