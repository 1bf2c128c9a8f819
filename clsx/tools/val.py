"""Labelled accuracy: ``clsx val ARTIFACT... DATA``, as timm's ``validate.py`` and ``yolo val`` give it.

**DATA** is an ImageFolder tree (one folder per class, images anywhere below it) or a CSV of
``path,label`` rows (an optional ``path,label`` header; relative paths are relative to the CSV's
folder). A class is named, per folder or per row, by

- its **index** in the model's output (``0`` .. ``N-1``);
- its **label text**, matched case-, space- and underscore-insensitively against the model's labels
  (``tiger_cat`` and ``Tiger Cat`` both name ``tiger cat``); a text that two classes share once case
  is ignored (ImageNet-1k's ``Cardigan``, the corgi, and ``cardigan``, the sweater) is refused as
  ambiguous;
- a **WordNet id** (``n02123045``), mapped to ImageNet-1k through timm's ``ImageNetInfo`` synsets --
  for models whose 1000 classes are ImageNet-1k's (their labels are ImageNet-1k's, or they carry
  none), or 1001-class heads with ``background`` at 0. A model whose own labels are WordNet ids
  matches them as label text first.

A name that maps to no class (or to two) is one error line listing a few of them (exit 1), before any
image is run. Every artifact must be the same classifier (same class count; same labels where both
have labels), because the figures are compared against the first artifact's.

**Running.** Each artifact runs through :meth:`Classifier.predict_batches` -- the decode-ahead pipeline
``clsx infer`` uses, with the preprocessing its own metadata describes -- one artifact at a time
(loaded, run over DATA, unloaded). An image that cannot be read for any artifact is counted,
listed and excluded for all, so every artifact is scored on the same images; an image whose output
is not finite (NaN/inf logits: a broken FP16 graph, say) is scored as wrong and counted per artifact.

**Figures.** Per artifact top-1 and top-k accuracy (k = ``topk``, default 5) with n and a 95 % Wilson
score interval (:func:`clsx.core.agreement.wilson_interval`), and the drop against the first artifact
in percentage points (first minus this: positive is worse). ``per_class`` adds a row per class.

**Gate.** ``min_top1`` is judged on the **lower bound of the 95 % Wilson interval** of top-1, not on
the point estimate: an artifact passes only when the data show, at 95 % confidence, that its top-1
is at least ``min_top1``. A small evaluation set therefore cannot pass a tight gate by luck (9/10
correct is a 90 % point estimate but a 59.6 % lower bound). :meth:`ValReport.gate_error` is the
exit-3 :class:`GateFailedError`.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clsx.core.agreement import wilson_interval
from clsx.core.errors import ClsxError, GateFailedError, SpecError
from clsx.core.spec import ModelSpec
from clsx.predict.classifier import Classifier
from clsx.predict.listing import iter_image_paths
from clsx.tools.parity import ImageFailure, Target, open_target, target_name

log = logging.getLogger(__name__)

Z95 = 1.96
GATE_RULE = "wilson_lower_95"  # how --min-top1 is judged (see the module docstring)
_WNID = re.compile(r"n\d{8}")
_HEADER_PATH = {"path", "file", "filename", "image", "image_path", "img"}
_HEADER_LABEL = {"label", "class", "class_index", "class_name", "target", "index", "wnid", "synset"}
_SHOWN = 5  # examples in one-line errors and warnings


class ValError(ClsxError):
    """DATA that cannot be evaluated: missing, malformed, empty, or naming classes the model lacks."""


# ---------------------------------------------------------------------------------------------
# DATA


@dataclass(frozen=True)
class Sample:
    path: Path
    name: str  # the class as DATA names it: folder name or CSV label cell


@dataclass(frozen=True)
class Dataset:
    root: Path  # the folder or CSV file given
    kind: str  # "folder" | "csv"
    samples: tuple[Sample, ...]

    @property
    def names(self) -> list[str]:
        """Distinct class names, in order of first appearance."""
        return list(dict.fromkeys(s.name for s in self.samples))


def read_dataset(data: str | os.PathLike) -> Dataset:
    """An ImageFolder tree or a ``path,label`` CSV -> samples (nothing is decoded yet)."""
    root = Path(data)
    if not root.exists():
        raise ValError(f"{root}: no such file or directory")
    if root.is_dir():
        return _read_folder(root)
    if root.suffix.lower() == ".csv":
        return _read_csv(root)
    raise ValError(f"{root}: DATA must be an ImageFolder tree (one folder per class) or a .csv of path,label rows")


def _read_folder(root: Path) -> Dataset:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise ValError(f"{root}: cannot list folder ({exc.strerror or exc})") from None
    samples: list[Sample] = []
    loose = [e.name for e in entries if not e.name.startswith(".") and e.is_file()]
    empty = []
    for e in entries:
        if e.name.startswith(".") or not e.is_dir():
            continue
        paths = list(iter_image_paths(Path(e.path)))
        if not paths:
            empty.append(e.name)
        samples.extend(Sample(p, e.name) for p in paths)
    if loose:
        log.warning("%s: %d file(s) outside any class folder ignored (e.g. %s)", root, len(loose), ", ".join(loose[:_SHOWN]))
    if empty:
        log.warning("%s: %d class folder(s) without images ignored (e.g. %s)", root, len(empty), ", ".join(empty[:_SHOWN]))
    if not samples:
        raise ValError(f"{root}: no images in class folders (expected DATA/<class>/<image>, the class a WordNet id, "
                       "an index or a label)")
    return Dataset(root, "folder", tuple(samples))


def _read_csv(path: Path) -> Dataset:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    base = path.parent
    samples: list[Sample] = []
    for line, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise ValError(f"{path}:{line}: expected two fields, path,label; got {','.join(row)!r}")
        if not samples and line == 1 and cells[0].lower() in _HEADER_PATH and cells[1].lower() in _HEADER_LABEL:
            continue  # a header
        p = Path(cells[0]).expanduser()
        samples.append(Sample(p if p.is_absolute() else base / p, cells[1]))
    if not samples:
        raise ValError(f"{path}: no path,label rows")
    return Dataset(path, "csv", tuple(samples))


# ---------------------------------------------------------------------------------------------
# Class names -> model indices


def _norm(text: str) -> str:
    """Label text as compared: case-folded, without whitespace or underscores."""
    return "".join(text.casefold().replace("_", " ").split())


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (timm's ImageNetInfo synsets)."""
    from timm.data import ImageNetInfo

    wnids = tuple(ImageNetInfo("imagenet-1k").label_names())
    if len(wnids) != 1000:  # pragma: no cover - a timm that changed its tables
        raise ValError(f"timm's ImageNet-1k synset list has {len(wnids)} entries, not 1000")
    return wnids


@cache
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_wnids())}


def _imagenet_offset(spec: ModelSpec) -> int | None:
    """Where ImageNet-1k class 0 sits in this model's output, or None when its classes are not ImageNet-1k's."""
    from clsx.zoo.labels import imagenet_labels

    names = imagenet_labels()
    labels = spec.labels
    if spec.num_classes == 1000 and (labels is None or tuple(labels) == names):
        return 0
    if spec.num_classes == 1001 and labels is not None and tuple(labels) == ("background", *names):
        return 1
    return None


def class_map(names: Sequence[str], spec: ModelSpec, *, model: str = "the model", where: str = "DATA",
              what: str = "class name") -> dict[str, int]:
    """Each DATA class name -> the model's class index (see the module docstring for the rules).

    Raises :class:`ValError` naming a few of the names that map to no class, or to two.
    """
    n = spec.num_classes
    by_text: dict[str, list[int]] = {}
    for i, label in enumerate(spec.labels or ()):
        by_text.setdefault(_norm(label), []).append(i)
    offset = _imagenet_offset(spec)
    out: dict[str, int] = {}
    unknown: list[str] = []
    ambiguous: list[str] = []
    wnid_refused = False
    for name in names:
        key = name.strip()
        if key.isascii() and key.isdigit():
            if int(key) < n:
                out[name] = int(key)
            else:
                unknown.append(name)
            continue
        hits = by_text.get(_norm(key))
        if hits is not None:
            if len(hits) == 1:
                out[name] = hits[0]
            else:
                ambiguous.append(f"{name!r} (classes {', '.join(map(str, hits))})")
            continue
        if _WNID.fullmatch(key.lower()):
            index = _wnid_index().get(key.lower())
            if offset is not None and index is not None:
                out[name] = index + offset
                continue
            wnid_refused = wnid_refused or (offset is None)
        unknown.append(name)
    if unknown or ambiguous:
        kind = ("ImageNet-1k" if offset is not None and spec.labels else "its own labels" if spec.labels
                else "no labels")
        parts = []
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:_SHOWN]) + (f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else "")
            parts.append(f"{len(unknown)} of {len(names)} {what}s in {where} map to no class of {model} "
                         f"({n} classes, {kind}): {shown}")
        if ambiguous:
            parts.append(f"ambiguous label text {', '.join(ambiguous[:_SHOWN])}: use the index or WordNet id")
        hint = f"name classes by index (0-{n - 1}), by the model's label text"
        hint += " or by ImageNet-1k WordNet id (n01440764)" if offset is not None else ""
        if wnid_refused:
            hint += f"; WordNet ids name ImageNet-1k classes, and {model}'s are not ImageNet-1k's"
        raise ValError("; ".join(parts) + f" -- {hint}")
    if offset == 0 and spec.labels is None and any(_WNID.fullmatch(k.strip().lower()) for k in out):
        log.info("%s has 1000 classes and no labels: WordNet ids are taken in ImageNet-1k order", model)
    return out


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Accuracy:
    correct: int
    n: int

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def ci95(self) -> tuple[float, float]:
        """95 % Wilson score interval."""
        return wilson_interval(self.correct, self.n, Z95) if self.n else (0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.ci95
        return {"correct": self.correct, "n": self.n, "accuracy": self.value, "ci95": [lo, hi]}


@dataclass(frozen=True)
class ClassResult:
    index: int
    label: str  # the model's label ("" when it has none)
    names: tuple[str, ...]  # how DATA names this class
    top1: Accuracy
    topk: Accuracy

    @property
    def shown(self) -> str:
        others = [x for x in self.names if _norm(x) != _norm(self.label) and x.strip() != str(self.index)]
        if not self.label:
            return ", ".join(self.names)
        return f"{self.label} ({', '.join(others)})" if others else self.label

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "names": list(self.names), "n": self.top1.n,
                "top1": self.top1.to_dict(), "topk": self.topk.to_dict()}


@dataclass(frozen=True)
class ArtifactResult:
    target: str
    backend: str
    runtime: str  # what actually ran (Runtime.describe())
    top1: Accuracy
    topk: Accuracy
    drop_top1_pts: float | None  # (first - this) in percentage points; None for the first artifact
    drop_topk_pts: float | None
    nonfinite: int = 0  # images whose output was NaN/inf (scored as wrong)
    misses: tuple[str, ...] = ()
    per_class: tuple[ClassResult, ...] | None = None

    @property
    def passed(self) -> bool:
        return not self.misses

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "backend": self.backend, "runtime": self.runtime, "n": self.top1.n,
            "top1": self.top1.to_dict(), "topk": self.topk.to_dict(),
            "drop_top1_pts": self.drop_top1_pts, "drop_topk_pts": self.drop_topk_pts,
            "nonfinite": self.nonfinite, "passed": self.passed, "misses": list(self.misses),
            "per_class": [c.to_dict() for c in self.per_class] if self.per_class is not None else None,
        }


@dataclass(frozen=True)
class ValReport:
    data: str
    data_format: str  # "folder" | "csv"
    topk: int
    listed: int  # samples DATA lists
    unreadable: tuple[ImageFailure, ...]  # excluded for every artifact
    classes: int  # distinct classes among the evaluated samples
    artifacts: tuple[ArtifactResult, ...]
    min_top1: float | None = None

    @property
    def evaluated(self) -> int:
        return self.listed - len(self.unreadable)

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    def gate_error(self) -> GateFailedError | None:
        """The exit-3 error when an artifact misses ``min_top1`` (judged on the Wilson lower bound), or None."""
        missed = [f"{a.target}: {'; '.join(a.misses)}" for a in self.artifacts if a.misses]
        return GateFailedError("val gate failed: " + " | ".join(missed)) if missed else None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (stable keys)."""
        return {
            "data": {"path": self.data, "format": self.data_format, "listed": self.listed, "evaluated": self.evaluated,
                     "classes": self.classes, "unreadable": [u.to_dict() for u in self.unreadable]},
            "topk": self.topk,
            "confidence": 0.95,
            "gate": {"min_top1": self.min_top1, "rule": GATE_RULE},
            "artifacts": [a.to_dict() for a in self.artifacts],
            "passed": self.passed,
        }

    def format_table(self) -> str:
        """One row per artifact (whitespace-separated, meant to be read and parsed); with per-class
        results a second table follows after a blank line. Percentages; drops in points."""
        k = self.topk
        head = ["artifact", "backend", "n", "unreadable", "top1", "top1_ci95", f"top{k}", f"top{k}_ci95",
                "drop_top1", f"drop_top{k}", "gate"]
        rows = []
        for a in self.artifacts:
            gate = "-" if self.min_top1 is None else ("pass" if a.passed else "FAIL")
            rows.append([a.target, a.backend, str(a.top1.n), str(len(self.unreadable)), _pct(a.top1.value), _ci(a.top1),
                         _pct(a.topk.value), _ci(a.topk), _pts(a.drop_top1_pts), _pts(a.drop_topk_pts), gate])
        out = _columns(head, rows)
        per = [(a, c) for a in self.artifacts for c in (a.per_class or ())]
        if per:
            head2 = ["artifact", "class", "n", "top1", f"top{k}", "label"]
            rows2 = [[a.target, str(c.index), str(c.top1.n), _pct(c.top1.value), _pct(c.topk.value), c.shown] for a, c in per]
            out += "\n" + _columns(head2, rows2)
        return out


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.2f}"


def _ci(acc: Accuracy) -> str:
    lo, hi = acc.ci95
    return f"[{100 * lo:.2f},{100 * hi:.2f}]"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def _columns(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]) + "\n"


# ---------------------------------------------------------------------------------------------
# Running


def _check_same_classifier(names: list[str], specs: list[ModelSpec]) -> None:
    first, s0 = names[0], specs[0]
    for name, s in zip(names[1:], specs[1:]):
        if s.num_classes != s0.num_classes:
            raise ValError(f"{name} has {s.num_classes} classes but {first} has {s0.num_classes}; "
                           "val compares artifacts of the same classifier")
        if s.labels is not None and s0.labels is not None and tuple(s.labels) != tuple(s0.labels):
            i = next((i for i, (a, b) in enumerate(zip(s0.labels, s.labels)) if a != b), 0)
            raise ValError(f"{name} labels differ from {first}'s (class {i}: {s.labels[i]!r} vs {s0.labels[i]!r}); "
                           "val compares artifacts of the same classifier")


def _predict_topk(runtime: Any, paths: list[Path], k: int, batch_size: int, workers: int | None
                  ) -> tuple[np.ndarray, dict[int, str], np.ndarray]:
    """(top-k indices (N, k), per-position read errors, non-finite mask) through Classifier.predict_batches."""
    classifier = Classifier(runtime, batch_size=batch_size, workers=workers)
    top = np.full((len(paths), k), -1, np.int64)
    errors: dict[int, str] = {}
    nonfinite = np.zeros(len(paths), bool)
    pos = 0
    for batch in classifier.predict_batches(paths, topk=k, batch_size=batch_size, workers=workers):
        for p in batch:
            if p.ok:
                if all(math.isfinite(x) for x in p.probs):
                    top[pos, : len(p.indices)] = p.indices
                else:
                    nonfinite[pos] = True
            else:
                errors[pos] = p.error or "cannot read image"
            pos += 1
    return top, errors, nonfinite


def run_val(
    artifacts: Sequence[Target],
    data: str | os.PathLike,
    *,
    topk: int = 5,
    batch_size: int = 32,
    per_class: bool = False,
    workers: int | None = None,
    device: str | None = None,
    min_top1: float | None = None,
    model_opts: Mapping[str, Any] | None = None,
    graph_opts: Mapping[str, Any] | None = None,
) -> ValReport:
    """Top-1 / top-k accuracy of each artifact on labelled DATA (see the module docstring).

    ``artifacts``: anything :func:`clsx.open` takes (``model.onnx``, ``model.plan``, ``NAME@BACKEND``,
    a built ``LoadedModel``) or an open Runtime; ``model_opts`` (weights, pretrained, num_classes)
    apply to model names on torch; ``graph_opts`` (preset, preprocess, labels) to ONNX graphs clsx did
    not make, as in :func:`clsx.tools.parity.run_parity`. Raises :class:`ValError` (exit 1) for bad DATA or artifacts that are
    not the same classifier; the ``min_top1`` gate is reported (``report.gate_error()``), not raised.
    """
    if not artifacts:
        raise ValError("give at least one artifact to evaluate")
    if topk < 1 or batch_size < 1:
        raise SpecError("topk and batch size must be at least 1")
    if min_top1 is not None and not 0.0 <= min_top1 <= 1.0:
        raise SpecError(f"min_top1 must be a fraction between 0 and 1; got {min_top1}")
    dataset = read_dataset(data)  # before any model loads

    opened: list[tuple[str, Any, bool]] = []
    try:
        for t in artifacts:
            rt, owned = open_target(t, device=device, model_opts=model_opts, graph_opts=graph_opts)
            opened.append((target_name(t), rt, owned))
        names = [name for name, _, _ in opened]
        specs = [rt.spec for _, rt, _ in opened]
        _check_same_classifier(names, specs)
        labelled = next((i for i, s in enumerate(specs) if s.labels), 0)
        spec = specs[labelled]
        what = "class folder" if dataset.kind == "folder" else "label"
        mapping = class_map(dataset.names, spec, model=names[labelled], where=str(dataset.root), what=what)
        k = min(topk, spec.num_classes)
        if k < topk:
            log.warning("topk %d is more than the %d classes; using %d", topk, spec.num_classes, k)
        paths = [s.path for s in dataset.samples]
        truth = np.array([mapping[s.name] for s in dataset.samples], np.int64)
        log.info("val: %d images in %d classes from %s", len(paths), len(set(truth.tolist())), dataset.root)

        results, unread = _run_each(opened, paths, k, batch_size, workers)
    finally:
        for _, rt, owned in opened:
            if owned:
                rt.deactivate()

    keep, unreadable = _excluded(paths, unread, dataset.root)
    y = truth[keep]
    label_of = spec.labels or ()
    names_of: dict[int, list[str]] = {}
    for nm, idx in mapping.items():
        names_of.setdefault(idx, []).append(nm)
    out: list[ArtifactResult] = []
    for name, backend, described, top, nonfinite in results:
        res = _score(name, backend, described, top[keep], nonfinite[keep], y, first=out[0] if out else None,
                     min_top1=min_top1, per_class=per_class, label_of=label_of, names_of=names_of)
        lo1, hi1 = res.top1.ci95
        log.info("%s: top-1 %.2f%% [%.2f, %.2f], top-%d %.2f%% on %d images", name, 100 * res.top1.value, 100 * lo1,
                 100 * hi1, k, 100 * res.topk.value, res.top1.n)
        out.append(res)
    return ValReport(
        data=str(dataset.root), data_format=dataset.kind, topk=k, listed=len(paths), unreadable=unreadable,
        classes=int(len(np.unique(y))), artifacts=tuple(out), min_top1=min_top1,
    )


def _run_each(opened: list[tuple[str, Any, bool]], paths: list[Path], k: int, batch_size: int,
              workers: int | None) -> tuple[list[tuple[str, str, str, np.ndarray, np.ndarray]], dict[int, str]]:
    """Each artifact's top-k on every image, one artifact in memory at a time; images any of them could not read."""
    results = []
    unread: dict[int, str] = {}
    for name, rt, owned in opened:
        try:
            described = rt.describe()  # loads it
            log.info("evaluating %s (%s)", name, described)
            top, errors, nonfinite = _predict_topk(rt, paths, k, batch_size, workers)
        finally:
            if owned:
                rt.deactivate()
        for i, why in errors.items():
            unread.setdefault(i, why)
        results.append((name, rt.backend, described, top, nonfinite))
    return results, unread


def _excluded(paths: list[Path], unread: dict[int, str], root: Any) -> tuple[np.ndarray, tuple[ImageFailure, ...]]:
    """The mask of images every artifact read, and the failures (warned about, a few shown)."""
    keep = np.ones(len(paths), bool)
    keep[list(unread)] = False
    unreadable = tuple(ImageFailure(str(paths[i]), why) for i, why in sorted(unread.items()))
    for u in unreadable[:_SHOWN]:
        log.warning("%s", u.error if u.path in u.error else f"{u.path}: {u.error}")
    if unreadable:
        log.warning("%d of %d images could not be read and are excluded for every artifact", len(unreadable), len(paths))
    if not keep.any():
        raise ValError(f"none of the {len(paths)} images in {root} could be read")
    return keep, unreadable


def _score(name: str, backend: str, described: str, t: np.ndarray, nonfinite: np.ndarray, y: np.ndarray, *,
           first: ArtifactResult | None, min_top1: float | None, per_class: bool, label_of: Sequence[str],
           names_of: Mapping[int, list[str]]) -> ArtifactResult:
    """One artifact's accuracy figures (``t``: its top-k on the kept images, ``y``: their classes)."""
    hit1 = t[:, 0] == y
    hitk = (t == y[:, None]).any(axis=1)
    top1, topkacc = Accuracy(int(hit1.sum()), len(y)), Accuracy(int(hitk.sum()), len(y))
    bad = int(nonfinite.sum())
    if bad:
        log.warning("%s: %d image(s) gave non-finite outputs (NaN/inf), scored as wrong", name, bad)
    misses: list[str] = []
    if min_top1 is not None and top1.ci95[0] < min_top1:
        lo = top1.ci95[0]
        misses.append(f"top-1 {top1.value:.2%} (n={top1.n}, 95% CI lower bound {lo:.2%}) < {min_top1:.2%}")
    classes = None
    if per_class:
        classes = tuple(
            ClassResult(int(c), label_of[c] if c < len(label_of) else "", tuple(names_of.get(int(c), ())),
                        Accuracy(int(hit1[y == c].sum()), int((y == c).sum())),
                        Accuracy(int(hitk[y == c].sum()), int((y == c).sum())))
            for c in np.unique(y)
        )
    return ArtifactResult(
        target=name, backend=backend, runtime=described, top1=top1, topk=topkacc,
        drop_top1_pts=None if first is None else 100 * (first.top1.value - top1.value),
        drop_topk_pts=None if first is None else 100 * (first.topk.value - topkacc.value),
        nonfinite=bad, misses=tuple(misses), per_class=classes,
    )
