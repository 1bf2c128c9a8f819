"""Label-free parity: does a candidate artifact classify a folder of real images like the reference?

``clsx parity REFERENCE CANDIDATE... --images DIR`` and the fidelity gate in clsx's own tests run
:func:`run_parity`. The figures per candidate come from :func:`clsx.core.agreement.compare`: top-1
agreement, the reference's top-1 within the candidate's top-k, mean Jaccard overlap of the top-k
sets, max/mean absolute logit difference and the mean KL divergence of the softmax outputs.

**Which tensors each artifact sees.** Every image is decoded and preprocessed by
:mod:`clsx.core.preprocess` once per *distinct* preprocessing spec, so artifacts whose metadata describe
the same preprocessing (the normal case: FP16/INT8/engines inherit the FP32 graph's document) run
on the very same tensors. A candidate whose spec differs from the reference's (say its metadata
carries the wrong mean/std) gets the tensors *its own* spec produces -- what a deployment of that
artifact would feed it -- with a warning naming the differing fields; the figures then show what
the difference costs, which is how a broken artifact gets caught. ``input_mode="shared"``
(``--shared-input``) feeds the reference's tensors to every artifact instead, to compare the graphs
alone.

**Nothing is dropped silently.** An image that cannot be decoded (or that the reference fails on)
is reported per image and compared for no one; a candidate that fails on some images (an
exception, or non-finite logits) is compared on the rest and its failures are listed per image; a
gate counts any candidate failure as a miss. Artifacts with different class counts or labels are
one clear error: comparing them would be meaningless.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

import numpy as np

from clsx.core.agreement import Agreement, compare, softmax
from clsx.core.errors import ClsxError, GateFailedError, MissingDependencyError, SpecError
from clsx.core.preprocess import preprocess
from clsx.core.files import check_writable, first_line, refuse_existing, refuse_folder_path, write_file
from clsx.core.machine import cpu_cores
from clsx.predict.listing import iter_image_paths
from clsx.predict.pipeline import batched, decode, default_window, read_ahead
from clsx.runtimes.base import Runtime, RuntimeInputError
from clsx.core.spec import InputFormat, ModelSpec, PreprocessSpec

if TYPE_CHECKING:
    from clsx.zoo import LoadedModel

log = logging.getLogger(__name__)

Target = Union[str, os.PathLike, Runtime, "LoadedModel"]
INPUT_MODES = ("own", "shared")


class ParityError(ClsxError):
    """Artifacts that cannot be compared (different class counts or labels), or no images to compare."""


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ImageFailure:
    """An image left out of a comparison, and why."""

    path: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "error": self.error}


@dataclass(frozen=True)
class Flip:
    """An image whose top-1 class differs between reference and candidate."""

    path: str
    ref_index: int
    ref_label: str
    ref_prob: float
    cand_index: int
    cand_label: str
    cand_prob: float
    ref_rank: int  # 1-based rank of the reference's top-1 class in the candidate's ordering

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ref_top1": {"index": self.ref_index, "label": self.ref_label, "prob": round(self.ref_prob, 6)},
            "cand_top1": {"index": self.cand_index, "label": self.cand_label, "prob": round(self.cand_prob, 6)},
            "ref_top1_rank": self.ref_rank,
        }


@dataclass(frozen=True)
class Thresholds:
    """Gate settings; ``None`` means not gated. ``min_topk``: reference top-1 within candidate top-k."""

    min_top1: float | None = None
    min_topk: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_top1", "min_topk"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise SpecError(f"{name} must be a fraction between 0 and 1; got {value}")

    @property
    def active(self) -> bool:
        return self.min_top1 is not None or self.min_topk is not None

    def misses(self, agreement: Agreement | None, failed: int, total: int) -> list[str]:
        """Why a candidate misses the gate (empty: it passes, or nothing is gated)."""
        if not self.active:
            return []
        if agreement is None:
            return ["no image could be compared"]
        out = []
        if failed:
            out.append(f"failed on {failed} of {total} images")
        if self.min_top1 is not None and agreement.top1 < self.min_top1:
            out.append(f"top-1 agreement {agreement.top1:.2%} < {self.min_top1:.2%}")
        if self.min_topk is not None and agreement.ref_top1_in_topk < self.min_topk:
            out.append(f"reference top-1 in top-{agreement.topk} {agreement.ref_top1_in_topk:.2%} < {self.min_topk:.2%}")
        return out

    def to_dict(self) -> dict[str, float | None]:
        return {"min_top1": self.min_top1, "min_topk": self.min_topk}


@dataclass(frozen=True)
class CandidateReport:
    target: str
    backend: str
    runtime: str  # what actually ran (Runtime.describe())
    agreement: Agreement | None  # None when no image could be compared
    flips: tuple[Flip, ...] = ()
    failed: tuple[ImageFailure, ...] = ()
    preprocess_differs: tuple[str, ...] = ()  # fields of its PreprocessSpec that differ from the reference's
    misses: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.misses

    def to_dict(self) -> dict[str, Any]:
        a = self.agreement
        return {
            "target": self.target,
            "backend": self.backend,
            "runtime": self.runtime,
            "images": a.images if a else 0,
            "top1": a.top1 if a else None,
            "ref_top1_in_topk": a.ref_top1_in_topk if a else None,
            "topk_jaccard": a.topk_jaccard if a else None,
            "max_abs_diff": a.max_abs_diff if a else None,
            "mean_abs_diff": a.mean_abs_diff if a else None,
            "mean_kl": a.mean_kl if a else None,
            "flips": [f.to_dict() for f in self.flips],
            "failed": [f.to_dict() for f in self.failed],
            "preprocess_differs": list(self.preprocess_differs),
            "passed": self.passed,
            "misses": list(self.misses),
        }


@dataclass(frozen=True)
class ParityReport:
    reference: str
    reference_backend: str
    reference_runtime: str
    topk: int
    input_mode: str
    listed: int  # images found under the given paths
    image_errors: tuple[ImageFailure, ...]  # images compared for no one (unreadable, or the reference failed)
    candidates: tuple[CandidateReport, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.candidates)

    @property
    def compared(self) -> int:
        """Images the reference produced logits for (each candidate's own count may be lower)."""
        return self.listed - len(self.image_errors)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (stable keys)."""
        return {
            "reference": {"target": self.reference, "backend": self.reference_backend, "runtime": self.reference_runtime},
            "topk": self.topk,
            "input_mode": self.input_mode,
            "images": {
                "listed": self.listed,
                "compared": self.compared,
                "errors": [e.to_dict() for e in self.image_errors],
            },
            "thresholds": self.thresholds.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "passed": self.passed,
        }

    def gate_error(self) -> GateFailedError | None:
        """The exit-3 error for missed thresholds, or None."""
        missed = [f"{c.target}: {'; '.join(c.misses)}" for c in self.candidates if c.misses]
        return GateFailedError("parity gate failed: " + " | ".join(missed)) if missed else None

    def format_table(self) -> str:
        """One row per candidate, whitespace-separated columns (meant to be read and parsed)."""
        k = self.topk
        head = ["candidate", "backend", "images", "failed", "top1", f"top{k}_member", f"top{k}_jaccard",
                "max_abs_diff", "mean_abs_diff", "mean_kl", "gate"]
        rows = []
        for c in self.candidates:
            a = c.agreement
            gate = "-" if not self.thresholds.active else ("pass" if c.passed else "FAIL")
            if a is None:
                rows.append([c.target, c.backend, "0", str(len(c.failed)), *(["-"] * 6), gate])
                continue
            rows.append([
                c.target, c.backend, str(a.images), str(len(c.failed)), f"{a.top1:.2%}", f"{a.ref_top1_in_topk:.2%}",
                f"{a.topk_jaccard:.4f}", f"{a.max_abs_diff:.3g}", f"{a.mean_abs_diff:.3g}", f"{a.mean_kl:.3g}", gate,
            ])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [head, *rows]]
        return "\n".join(lines) + "\n"

    def flips_csv(self) -> str:
        """``--flips``: one row per flipped image, per image a candidate failed on, per unreadable image."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["candidate", "path", "kind", "ref_top1_index", "ref_top1_label", "ref_top1_prob",
                    "cand_top1_index", "cand_top1_label", "cand_top1_prob", "ref_top1_rank", "error"])
        for e in self.image_errors:
            w.writerow(["", e.path, "unreadable", "", "", "", "", "", "", "", e.error])
        for c in self.candidates:
            for f in c.flips:
                w.writerow([c.target, f.path, "flip", f.ref_index, f.ref_label, f"{f.ref_prob:.6f}",
                            f.cand_index, f.cand_label, f"{f.cand_prob:.6f}", f.ref_rank, ""])
            for e in c.failed:
                w.writerow([c.target, e.path, "failed", "", "", "", "", "", "", "", e.error])
        return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Opening the artifacts


@dataclass
class _Artifact:
    name: str
    runtime: Runtime
    owned: bool  # opened here, so closed here
    spec: ModelSpec | None = None
    group: int = 0  # index of its preprocessing spec in the run's distinct specs

    @property
    def pre(self) -> PreprocessSpec:
        assert self.spec is not None
        return self.spec.preprocess


def target_name(target: Target) -> str:
    """How a target is named in tables: as given, or ``ref@backend`` for objects in memory."""
    if isinstance(target, (str, os.PathLike)):
        return os.fspath(target)
    if isinstance(target, Runtime):
        inner = target.target
        if isinstance(inner, (str, os.PathLike)):
            return f"{os.fspath(inner)}@{target.backend}"
        spec = getattr(inner, "spec", None)
        return f"{spec.ref}@{target.backend}" if isinstance(spec, ModelSpec) else f"<{type(inner).__name__}>@{target.backend}"
    spec = getattr(target, "spec", None)
    return f"{spec.ref}@torch" if isinstance(spec, ModelSpec) else f"<{type(target).__name__}>"


def open_target(target: Target, *, device: str | None = None, model_opts: Mapping[str, Any] | None = None,
                **open_kw: Any) -> tuple[Runtime, bool]:
    """A Runtime for ``target`` and whether it was opened here. ``model_opts`` (weights, pretrained,
    num_classes) apply to model names on the torch backend only; other targets carry their weights.
    ``random_weights`` among them applies to every target (no warning about random weights)."""
    from clsx.runtimes.registry import CHECKPOINT_SUFFIXES, infer_backend, open as open_runtime, split_backend

    if isinstance(target, Runtime):
        return target, False
    kw = dict(open_kw)
    model_opts = dict(model_opts or {})
    if model_opts.pop("random_weights", False):
        kw["random_weights"] = True
    if isinstance(target, (str, os.PathLike)) and model_opts:
        head, backend = split_backend(os.fspath(target)) if isinstance(target, str) else (os.fspath(target), None)
        if (backend or infer_backend(head)) == "torch" and Path(head).suffix.lower() not in CHECKPOINT_SUFFIXES:
            kw.update({k: v for k, v in model_opts.items() if v})
    return open_runtime(target, device=device, **kw), True


def preprocess_differences(ref: PreprocessSpec, cand: PreprocessSpec) -> list[str]:
    """Fields of two preprocessing specs that differ, as ``name ref -> cand``."""
    out = []
    for f in fields(PreprocessSpec):
        a, b = getattr(ref, f.name), getattr(cand, f.name)
        same = np.allclose(a, b, rtol=0, atol=1e-7) if f.name in ("mean", "std") and len(a) == len(b) else a == b
        if not same:
            out.append(f"{f.name} {a} -> {b}")
    return out


def _check_comparable(ref: _Artifact, cand: _Artifact) -> None:
    rs, cs = ref.spec, cand.spec
    assert rs is not None and cs is not None
    if rs.num_classes != cs.num_classes:
        raise ParityError(f"{cand.name} has {cs.num_classes} classes but the reference {ref.name} has {rs.num_classes}; "
                          "parity compares artifacts of the same classifier")
    if rs.labels is not None and cs.labels is not None and tuple(rs.labels) != tuple(cs.labels):
        i = next((i for i, (a, b) in enumerate(zip(rs.labels, cs.labels)) if a != b), min(len(rs.labels), len(cs.labels)))
        ra = rs.labels[i] if i < len(rs.labels) else "<none>"
        ca = cs.labels[i] if i < len(cs.labels) else "<none>"
        raise ParityError(f"{cand.name} labels differ from the reference {ref.name}'s (class {i}: {ca!r} vs {ra!r}); "
                          "parity compares artifacts of the same classifier")


# ---------------------------------------------------------------------------------------------
# Running


def run_guarded(runtime: Runtime, batch: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """Logits for ``batch`` and, per row, ``None`` or why that image failed.

    A batch that raises is retried image by image, so one image that a backend cannot run does not
    cost the others; rows with non-finite logits (FP16 overflow, a broken graph) count as failures.
    Rows that failed hold NaN.
    """
    n = batch.shape[0]
    errors: list[str | None] = [None] * n
    try:
        out = runtime.run(batch)
    except (RuntimeInputError, MissingDependencyError):
        raise  # the input does not fit the model at all, or its backend is missing: not a per-image failure
    except Exception as exc:
        if n == 1:
            return np.full((1, 0), np.nan, np.float32), [f"{type(exc).__name__}: {first_line(exc)}"]
        parts: list[np.ndarray | None] = []
        for i in range(n):
            row, err = run_guarded(runtime, batch[i : i + 1])
            parts.append(row if err[0] is None else None)
            errors[i] = err[0]
        width = next((p.shape[1] for p in parts if p is not None), 0)
        out = np.full((n, width), np.nan, np.float32)
        for i, p in enumerate(parts):
            if p is not None:
                out[i] = p[0]
        return out, errors
    bad = ~np.isfinite(out).all(axis=1)
    for i in np.flatnonzero(bad):
        errors[i] = "non-finite logits (NaN or inf)"
    return out, errors


def _label(spec: ModelSpec, index: int) -> str:
    return spec.labels[index] if spec.labels and index < len(spec.labels) else ""


def run_parity(
    reference: Target,
    candidates: Sequence[Target],
    images: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    topk: int = 5,
    batch_size: int = 32,
    workers: int | None = None,
    thresholds: Thresholds | None = None,
    input_mode: str = "own",
    device: str | None = None,
    model_opts: Mapping[str, Any] | None = None,
) -> ParityReport:
    """Run ``reference`` and every candidate over the images under ``images`` and compare their logits.

    Targets are anything :func:`clsx.open` takes (``model.onnx``, ``model.plan``, ``resnet50@torch``,
    a built ``LoadedModel``) or an open :class:`Runtime`. See the module docstring for which tensors
    each artifact sees (``input_mode``) and how failures are reported. Raises :class:`ParityError`
    (exit 1) when the artifacts are not comparable or there are no images; the gate itself is
    reported (``report.passed``, ``report.gate_error()``), not raised.
    """
    if not candidates:
        raise ParityError("give at least one candidate to compare with the reference")
    if input_mode not in INPUT_MODES:
        raise SpecError(f"input_mode must be one of {', '.join(INPUT_MODES)}; got {input_mode!r}")
    if topk < 1 or batch_size < 1:
        raise SpecError("topk and batch size must be at least 1")
    thresholds = thresholds or Thresholds()
    roots = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    paths = list(iter_image_paths(*roots))
    if not paths:
        raise ParityError(f"no images found under {', '.join(map(os.fspath, roots)) or 'the given paths'}")

    arts: list[_Artifact] = []
    try:
        for t in [reference, *candidates]:
            rt, owned = open_target(t, device=device, model_opts=model_opts)
            arts.append(_Artifact(target_name(t), rt, owned))
        for a in arts:
            a.spec = a.runtime.spec
        ref, cands = arts[0], arts[1:]
        for c in cands:
            _check_comparable(ref, c)
        k = min(topk, ref.spec.num_classes)  # type: ignore[union-attr]
        if k < topk:
            log.warning("topk %d is more than the %d classes; using %d", topk, k, k)
        differs = {id(c): preprocess_differences(ref.pre, c.pre) for c in cands}
        specs = _assign_groups(arts, input_mode, differs)
        return _compare_all(ref, cands, specs, paths, k, batch_size, workers or cpu_cores(), thresholds, input_mode, differs)
    finally:
        for a in arts:
            if a.owned:
                a.runtime.deactivate()


def _assign_groups(arts: list[_Artifact], input_mode: str, differs: dict[int, list[str]]) -> list[tuple[PreprocessSpec, InputFormat]]:
    """Distinct (preprocessing spec, input format) pairs to compute, and each artifact's index into them:
    a graph that takes uint8 pixels gets the pixels of the same spec (it normalizes them itself)."""
    ref = arts[0]
    specs: list[tuple[PreprocessSpec, InputFormat]] = [(ref.pre, ref.runtime.input_format)]
    for c in arts[1:]:
        if differs[id(c)]:
            shown = "; ".join(differs[id(c)])
            if input_mode == "shared":
                if c.pre.input_size != ref.pre.input_size:
                    raise ParityError(f"{c.name} takes {c.pre.input_size} inputs, the reference {ref.pre.input_size}: "
                                      "shared input needs the same input size")
                log.warning("%s: preprocessing differs from the reference's (%s); shared input: it gets the "
                            "reference's tensors, so the figures compare the graphs only", c.name, shown)
            else:
                log.warning("%s: preprocessing differs from the reference's (%s); it gets the input its own "
                            "metadata describes, so the figures include what that difference costs", c.name, shown)
        key = (ref.pre if input_mode == "shared" else c.pre, c.runtime.input_format)
        if key not in specs:
            specs.append(key)
        c.group = specs.index(key)
    return specs


def _compare_all(ref: _Artifact, cands: list[_Artifact], specs: list[tuple[PreprocessSpec, InputFormat]], paths: list[Path], k: int,
                 batch_size: int, workers: int, thresholds: Thresholds, input_mode: str,
                 differs: dict[int, list[str]]) -> ParityReport:
    n = len(paths)
    classes = ref.spec.num_classes  # type: ignore[union-attr]
    logits = {id(a): np.full((n, classes), np.nan, np.float32) for a in [ref, *cands]}
    ok = {id(a): np.zeros(n, bool) for a in [ref, *cands]}
    reasons: dict[int, dict[int, str]] = {id(a): {} for a in [ref, *cands]}
    log.info("comparing %d candidate(s) with %s on %d images (%s)", len(cands), ref.name, n, ref.runtime.describe())
    for c in cands:
        log.info("candidate %s: %s", c.name, c.runtime.describe())

    def load_all(path: Path) -> list[tuple[np.ndarray | None, str | None]]:
        return [decode(lambda src: preprocess(src, spec, fmt), path, str(path)) for spec, fmt in specs]

    loaded_iter = read_ahead(paths, load_all, workers=workers, window=default_window(batch_size, workers), name="clsx-parity")
    for start, chunk in zip(range(0, n, batch_size), batched(loaded_iter, batch_size)):
        loaded = [[item[1][g] for item in chunk] for g in range(len(specs))]
        idx = np.arange(start, start + len(chunk))
        _run_one(ref, loaded[ref.group], idx, logits, ok, reasons, classes, only=None)
        for c in cands:
            _run_one(c, loaded[c.group], idx, logits, ok, reasons, classes, only=ok[id(ref)])

    image_errors = tuple(ImageFailure(str(paths[i]), why) for i, why in sorted(reasons[id(ref)].items()))
    for e in image_errors:
        log.warning("%s (compared for no candidate)", e.error if e.path in e.error else f"{e.path}: {e.error}")
    reports = []
    for c in cands:
        both = ok[id(ref)] & ok[id(c)]
        failed = tuple(ImageFailure(str(paths[i]), why) for i, why in sorted(reasons[id(c)].items()) if ok[id(ref)][i])
        for e in failed:
            log.warning("%s failed on %s: %s", c.name, e.path, e.error)
        agreement = flips = None
        if both.any():
            sel = np.flatnonzero(both)
            r, q = logits[id(ref)][sel], logits[id(c)][sel]
            agreement = compare(r, q, k)
            flips = tuple(_flip(str(paths[sel[j]]), r[j], q[j], ref.spec, c.spec) for j in agreement.flips)  # type: ignore[arg-type]
        misses = thresholds.misses(agreement, len(failed), int(ok[id(ref)].sum()))
        reports.append(CandidateReport(
            target=c.name, backend=c.runtime.backend, runtime=c.runtime.describe(), agreement=agreement,
            flips=flips or (), failed=failed, preprocess_differs=tuple(differs[id(c)]), misses=tuple(misses),
        ))
        if agreement is not None:
            log.info("%s vs %s on %d images: top-1 agreement %.2f%%, reference top-1 in top-%d %.2f%%, %d flips",
                     c.name, ref.name, agreement.images, 100 * agreement.top1, agreement.topk,
                     100 * agreement.ref_top1_in_topk, len(agreement.flips))
    compared = n - len(image_errors)
    if image_errors:
        log.warning("compared %d of %d images: %d could not be read or run by the reference (listed above)",
                    compared, n, len(image_errors))
    if compared == 0:
        raise ParityError(f"none of the {n} images could be read and run by the reference")
    return ParityReport(
        reference=ref.name, reference_backend=ref.runtime.backend, reference_runtime=ref.runtime.describe(), topk=k,
        input_mode=input_mode, listed=n, image_errors=image_errors, candidates=tuple(reports), thresholds=thresholds,
    )


def _run_one(art: _Artifact, loaded: list[tuple[np.ndarray | None, str | None]], idx: np.ndarray,
             logits: dict[int, np.ndarray], ok: dict[int, np.ndarray], reasons: dict[int, dict[int, str]],
             classes: int, only: np.ndarray | None) -> None:
    """Run one artifact on one batch (only images the reference ran, for candidates) and record it."""
    rows = []
    for j, (tensor, err) in enumerate(loaded):
        i = int(idx[j])
        if only is not None and not only[i]:
            continue
        if tensor is None:
            reasons[id(art)][i] = err or "cannot read image"
        else:
            rows.append((i, tensor))
    if not rows:
        return
    out, errors = run_guarded(art.runtime, np.stack([t for _, t in rows]))
    if out.shape[1] not in (0, classes):
        raise ParityError(f"{art.name} returned {out.shape[1]} logits per image where the reference has {classes} classes")
    for (i, _), row, err in zip(rows, out, errors):
        if err is None:
            logits[id(art)][i] = row
            ok[id(art)][i] = True
        else:
            reasons[id(art)][i] = f"{'reference ' if only is None else ''}failed: {err}"


def _flip(path: str, ref_row: np.ndarray, cand_row: np.ndarray, ref_spec: ModelSpec, cand_spec: ModelSpec) -> Flip:
    pr, pc = softmax(ref_row[None])[0], softmax(cand_row[None])[0]
    ri, ci = int(np.argmax(ref_row)), int(np.argmax(cand_row))
    order = np.argsort(-cand_row, kind="stable")  # the ordering compare() uses: ties go to the lower index
    rank = int(np.flatnonzero(order == ri)[0]) + 1
    return Flip(path, ri, _label(ref_spec, ri), float(pr[ri]), ci, _label(cand_spec, ci), float(pc[ci]), rank)


# ---------------------------------------------------------------------------------------------
# Output


def check_output(path: str | os.PathLike, *, force: bool) -> Path:
    """Refuse an existing ``--flips`` file without ``force`` and an unwritable folder, before any work."""
    refuse_folder_path(path, what="--flips", example="flips.csv")
    p = Path(path)
    refuse_existing([p], force=force)
    check_writable(p)  # a missing folder is created when the file is written
    return p


def write_flips(report: ParityReport, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the flips CSV, published exclusively (never a half-written file)."""
    return write_file(path, report.flips_csv(), force=force)
