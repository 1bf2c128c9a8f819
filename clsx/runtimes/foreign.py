"""The spec of a graph clsx did not make: its signature, plus what the user says about preprocessing.

A partial document (:func:`clsx.core.graph_io.graph_document`: read from the graph, or the sidecar of a
plan built from one) knows the input's name, shape, dtype and layout, the output and the class count.
:func:`spec_for_graph` completes it, with one precedence (lowest first):

1. clsx's defaults (bilinear, crop 0.875, RGB, [0, 1]);
2. ``preset``: a model clsx knows (``timm:tf_efficientnet_lite0``): its eval preprocessing and, when the
   class counts agree, its labels (:func:`clsx.zoo.preset_spec`; the network is not built);
3. the graph: its static channels, height and width;
4. flags (``preprocess`` overrides, ``labels`` file).

Without a preset, something must be said: a float input needs ``--mean`` and ``--std`` (clsx cannot guess
a normalization) and a graph with dynamic height/width needs ``--input-size``; a ``uint8`` input
normalizes inside the graph, so any flag (``--crop-pct 0.875`` ...) confirms the rest of the defaults. What was chosen, and from where, is logged (stderr in the CLI).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from clsx.core.metadata import PREPROCESS_OPTIONS, PreprocessUnknownError, check_graph_input
from clsx.core.spec import InputFormat, ModelSpec, PreprocessOverrides, PreprocessSpec, resolve_preprocess

log = logging.getLogger(__name__)


def _given(overrides: PreprocessOverrides | Mapping[str, Any] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, PreprocessOverrides):
        return overrides.as_dict()
    return {k: v for k, v in dict(overrides).items() if v is not None}


def describe_preprocess(pre: PreprocessSpec, fmt: InputFormat) -> str:
    """One line: ``3x224x224, resize 256 bicubic, mean 0.5,0.5,0.5 std 0.5,0.5,0.5, RGB [0,1], NCHW float32``."""
    floats = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
    norm = (f"mean {floats(pre.mean)} std {floats(pre.std)}" if fmt.normalized_on_host
            else "pixels 0..255 (the graph normalizes)")
    return (f"{'x'.join(map(str, pre.input_size))}, resize {pre.resize_size} {pre.interpolation}, {norm}, "
            f"{pre.channel_order} [0,{pre.input_range:g}], {fmt.layout} {fmt.dtype}")


def spec_for_graph(doc: Mapping[str, Any], *, where: str, preset: str | None = None,
                   overrides: PreprocessOverrides | Mapping[str, Any] | None = None,
                   labels: str | Path | None = None) -> ModelSpec:
    """The full spec of a partial document (see the module docstring); one line listing the options
    that supply preprocessing when neither a preset nor enough flags are given."""
    entry = (doc.get("inputs") or [{}])[0]
    fmt = InputFormat.of_tensor(entry)
    shape = list(entry.get("shape") or [])
    chw = fmt.chw(tuple(shape[1:])) if len(shape) == 4 else (None, None, None)
    graph_size = tuple(chw) if all(isinstance(d, int) for d in chw) else None
    given = _given(overrides)
    model = doc.get("model") or {}
    base, sources = PreprocessSpec(), ["defaults"]
    preset_model: ModelSpec | None = None
    if preset:
        from clsx.zoo import preset_spec

        preset_model = preset_spec(preset)
        base, sources = preset_model.preprocess, [f"preset {preset_model.ref}"]
    else:
        needed = [("--input-size", "input_size")] if graph_size is None else []
        if fmt.normalized_on_host:
            needed += [("--mean", "mean"), ("--std", "std")]
        if not given or any(key not in given for _, key in needed):
            raise PreprocessUnknownError(f"{where}: no clsx metadata, so its preprocessing is unknown; pass {PREPROCESS_OPTIONS}")
    graph_layer: dict[str, Any] = {}
    if graph_size is not None and "input_size" not in given:
        graph_layer = {"input_size": graph_size}
        if graph_size != base.input_size:
            sources.append("the graph's input size")
    if given:
        sources.append("flags " + ", ".join(sorted(given)))
    pre = resolve_preprocess(base, graph_layer or None, given or None)
    check_graph_input(pre.input_size, tuple(shape) if len(shape) == 4 else None, where=where,
                      says="the preprocessing given says", layout=fmt.layout)
    n = model.get("num_classes")
    if not n:
        raise PreprocessUnknownError(f"{where}: its output has no fixed class count, which clsx needs to read its logits")
    names = _labels(labels, n, preset_model, where)
    log.info("%s: preprocessing %s (from %s); labels: %s", Path(where).name, describe_preprocess(pre, fmt),
             " < ".join(sources), f"{len(names)} names" if names else "none (class indices)")
    return ModelSpec(name=str(model.get("name") or Path(where).stem), source=str(model.get("source") or "onnx"),
                     num_classes=int(n), preprocess=pre, labels=names,
                     weights=str(model.get("weights") or f"graph:{Path(where).name}"))


def _labels(labels: str | Path | None, n: int, preset_model: ModelSpec | None, where: str) -> tuple[str, ...] | None:
    if labels is not None:
        from clsx.zoo.labels import read_labels

        return read_labels(labels, n)
    if preset_model is not None and preset_model.labels:
        if len(preset_model.labels) == n:
            return preset_model.labels
        log.warning("%s: the graph has %d classes, preset %s has %d: its labels are not used (pass --labels)",
                    Path(where).name, n, preset_model.ref, len(preset_model.labels))
    return None


def completed_document(doc: Mapping[str, Any], spec: ModelSpec, *, preset: str | None = None) -> dict[str, Any]:
    """A partial document made whole with ``spec`` (what ``clsx annotate`` writes, and what ``clsx calib``
    passes on to the INT8 graph): every later command reads it without flags."""
    from clsx import __version__

    producer = {k: v for k, v in (doc.get("producer") or {}).items() if k != "read_from_graph"}
    producer["annotated_by"] = f"clsx {__version__}" + (f" --preset {preset}" if preset else "")
    return {**doc, "model": spec.to_dict(), "producer": producer}
