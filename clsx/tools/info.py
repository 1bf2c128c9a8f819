"""``clsx info``: an artifact's metadata document as a short human-readable report.

``clsx info --json`` prints the document itself; this module only formats it. Sections it does not
know (added by later clsx versions or other artifact kinds) are printed as compact JSON, never dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from clsx.core.artifact import inside
from clsx.core.errors import terminal_safe
from clsx.core.metadata import PREPROCESS_OPTIONS
from clsx.core.spec import RANDOM_WEIGHTS

_KNOWN = {"schema_version", "clsx_version", "artifact", "precision", "model", "inputs", "outputs",
          "parent_sha256", "producer", "verification", "external_data", "tensorrt"}


def _shape(entry: Mapping[str, Any]) -> str:
    dims = ", ".join(str(d) for d in entry.get("shape", []))
    layout = f" {entry['layout']}" if entry.get("layout") else ""
    return f"{entry.get('name')} {entry.get('dtype')} [{dims}]{layout}"


def _floats(values: Any) -> str:
    return ",".join(f"{float(v):g}" for v in values or [])


def _preprocess(pre: Mapping[str, Any]) -> str:
    size = "x".join(str(v) for v in pre.get("input_size", []))
    rng = "[0,255]" if float(pre.get("input_range", 1.0)) == 255.0 else "[0,1]"
    return (f"resize {pre.get('resize_size')} {pre.get('interpolation')} -> center crop {size}, "
            f"{pre.get('channel_order', 'RGB')} {rng}, mean {_floats(pre.get('mean'))} std {_floats(pre.get('std'))}")


def _weights(weights: Any) -> str:
    if weights == RANDOM_WEIGHTS:
        return "RANDOM (untrained): predictions are meaningless; it was exported without --weights FILE or --pretrained"
    return str(weights)


def _verification(v: Mapping[str, Any] | None) -> str:
    if not v:
        return "not verified"
    verdict = "PASS" if v.get("passed") else "FAIL"
    parts = [f"{verdict} {v.get('candidate', '?')} vs {v.get('reference', '?')}",
             f"{v.get('photos', 0)} photos + {v.get('random', 0)} random",
             f"max |Δlogit| {float(v.get('max_abs_diff', float('nan'))):.3g} (rel tolerance {v.get('rel_tolerance')})"]
    if v.get("top1") is not None:
        parts.append(f"top-1 {float(v['top1']):.0%}, top-5 {float(v.get('top5') or 0):.0%}"
                     + ("" if v.get("agreement_gated") else " (not gated: random weights)"))
    for name, how in (v.get("criteria") or {}).items():
        if how != "tolerance":
            parts.append(f"{name} accepted against float64 ({how})")
    if v.get("reasons"):
        parts.append("; ".join(v["reasons"]))
    return ", ".join(parts)


def _dims(values: Any) -> str:
    return "x".join(str(v) for v in values or []) or "?"


def _tensorrt(t: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A plan sidecar's ``tensorrt`` section as report rows (keys this version does not know stay, as JSON)."""
    t = dict(t)
    ccs = ",".join(t.pop("compute_capabilities", None) or []) or "-"
    cc_default = t.pop("compute_capabilities_default", False)
    typing = "strongly typed" if t.pop("strongly_typed", True) else "weakly typed"
    if t.pop("legacy_weak_typing", False):
        typing += " (--legacy-weak-typing)"
    main = [f"{t.pop('flavour', '?')} {t.pop('version', '?')}", f"{t.pop('precision', '?')}", typing,
            f"targets {ccs}" + (" (builder default)" if cc_default else "")]
    compat = t.pop("hardware_compat", "none")
    if compat and compat != "none":
        main.append(f"hardware compat {compat}")
    if t.pop("version_compatible", False):
        main.append("version compatible")
    rows = [("tensorrt", ", ".join(main))]
    profile = dict(t.pop("profile", None) or {})
    if profile:
        rows.append(("profile", f"{profile.pop('input', 'input')}: min {_dims(profile.pop('min', None))}, "
                                f"opt {_dims(profile.pop('opt', None))}, max {_dims(profile.pop('max', None))}"
                     + "".join(f", {k} {json.dumps(v)}" for k, v in profile.items())))
    net = dict(t.pop("network", None) or {})
    if net:
        rows.append(("network", f"{net.pop('layers', '?')} layers, {net.pop('qdq_layers', 0)} Q/DQ, computes in "
                                f"{', '.join(net.pop('dtypes', None) or []) or '?'}"
                     + "".join(f", {k} {json.dumps(v)}" for k, v in net.items())))
    built_on = dict(t.pop("built_on", None) or {})
    gpu = built_on.get("gpu")
    where = f"on {gpu} ({built_on.get('compute_capability')})" if gpu else "without a GPU"
    workspace, opt_level, cache = t.pop("workspace_bytes", None), t.pop("opt_level", None), t.pop("timing_cache", None)
    build = [f"from {t.pop('onnx_file', '?')} in {float(t.pop('build_seconds', 0) or 0):.1f} s {where}",
             f"opt level {opt_level if opt_level is not None else 'default'}",
             f"workspace {workspace / 2**30:g} GB" if workspace else "workspace default"]
    if cache:
        build.append(f"timing cache {cache.get('path')}" + ("" if cache.get("supported", True) else " (not supported, ignored)"))
    rows.append(("built", ", ".join(build)))
    nbytes, sha = t.pop("plan_bytes", None), t.pop("plan_sha256", None)
    if nbytes is not None or sha:
        rows.append(("plan", f"{float(nbytes or 0) / 1e6:.1f} MB, sha256 {str(sha or '')[:12]}"))
    rows += [(f"tensorrt.{k}", json.dumps(v, separators=(",", ":"))) for k, v in t.items() if v is not None]
    return rows


#: Artifact kinds that hold code the loader runs, and what that code is.
CODE_ARTIFACTS = {
    "aoti": "an AOTInductor package holds a compiled shared library that is loaded (dlopen) and run, by Python and by the C++ library",
    "tensorrt": "a TensorRT plan can embed a lean runtime and plugin libraries that TensorRT loads and runs",
}
_CODE_SUFFIXES = {".pt2": "aoti", ".plan": "tensorrt", ".engine": "tensorrt"}


def trust_note(path: str | Path, doc: Mapping[str, Any]) -> str | None:
    """One line for artifacts that are code (``.pt2`` packages, TensorRT plans); None for data
    (ONNX graphs, checkpoints, sidecars: clsx reads those as data)."""
    kind = doc.get("artifact") if doc.get("artifact") in CODE_ARTIFACTS else _CODE_SUFFIXES.get(Path(path).suffix.lower())
    if kind is None:
        return None
    return f"CODE, not data: {CODE_ARTIFACTS[kind]}; open it only if you trust where it came from, as you would a program"


def _graph_files(path: Path) -> list[tuple[str, str]]:
    """External data of a graph clsx did not make (checked inside its folder, as every reader does)."""
    from clsx.core.artifact import checked_onnx

    files = checked_onnx(path)
    if not files:
        return [("data file", "none (weights inside the graph)")]
    return [("data file", ", ".join(f"{f.name} ({f.stat().st_size / 1e6:.1f} MB)" for f in files)
             + " beside it; the files travel together")]


def describe(path: str | Path, doc: Mapping[str, Any]) -> str:
    """The document as ``key  value`` lines (stdout of ``clsx info``)."""
    p = Path(path)
    model = doc.get("model", {})
    producer = dict(doc.get("producer") or {})
    labels = model.get("labels")
    rows: list[tuple[str, str]] = [
        ("file", f"{p} ({p.stat().st_size / 1e6:.1f} MB)" if p.exists() else str(p)),
    ]
    ext = doc.get("external_data")
    if ext:
        data = inside(p, str(ext.get("file") or p.name + ".data"), what="file named by metadata external_data.file",
                      must_exist=False)  # a name that leaves the folder is refused, never looked up
        state = "present" if data.is_file() else "MISSING"
        rows.append(("data file", f"external weights: {data.name} beside it ({float(ext.get('bytes', 0)) / 1e9:.2f} GB, "
                                f"sha256 {str(ext.get('sha256', ''))[:12]}, {state}); the two files travel together"))
    partial = model.get("preprocess", {}) is None  # read from a graph clsx did not make
    if partial and p.suffix.lower() == ".onnx":
        rows += _graph_files(p)
    rows += [
        ("artifact", f"{doc.get('artifact')} {doc.get('precision')} "
                     + ("(no clsx metadata: read from the graph)" if producer.get("read_from_graph") else
                        f"(clsx {doc.get('clsx_version')}, schema {doc.get('schema_version')})")),
        ("model", f"{model.get('ref')} ({model.get('source')}), {model.get('num_classes') or 'unknown number of'} classes"),
        ("weights", _weights(model.get("weights"))),
    ]
    rows += [("input", _shape(e)) for e in doc.get("inputs", [])]
    rows += [("output", _shape(e)) for e in doc.get("outputs", [])]
    pixels = ((doc.get("inputs") or [{}])[0].get("dtype") == "uint8") and not partial
    rows.append(("preprocess", f"MISSING: pass {PREPROCESS_OPTIONS}" if partial else _preprocess(model.get("preprocess", {}))
                 + ("; uint8 input: the host stops at the pixels, the graph normalizes" if pixels else "")))
    if labels:
        rows.append(("labels", f"{len(labels)}: " + ", ".join(labels[:3]) + (", ..." if len(labels) > 3 else "")))
    else:
        rows.append(("labels", "MISSING (class indices): pass --labels or --preset" if partial else "none (class indices)"))
    producer.pop("read_from_graph", None)
    if producer:
        fp16 = producer.pop("fp16", None)
        batch = producer.pop("batch", None)
        main = ", ".join(f"{k} {v}" for k, v in producer.items() if not isinstance(v, (dict, list)))
        rows.append(("producer", main))
        if batch:
            rows.append(("batch", "dynamic" + (f" (max {batch.get('max')})" if batch.get("max") else "") if batch.get("dynamic") else f"fixed {batch.get('size')}"))
        if fp16:
            kept = fp16.get("nodes_fp32_by_op", 0) + len(fp16.get("nodes_fp32_by_range", [])) + len(fp16.get("nodes_fp32_by_weight_range", []))
            rows.append(("fp16", f"{fp16.get('converter')}; {kept} of {fp16.get('nodes')} nodes kept FP32"))
    if doc.get("parent_sha256"):
        rows.append(("parent", f"sha256 {doc['parent_sha256']}"))
    rows.append(("verified", _verification(doc.get("verification"))))
    if isinstance(doc.get("tensorrt"), Mapping):
        rows += _tensorrt(doc["tensorrt"])
    elif doc.get("tensorrt") is not None:
        rows.append(("tensorrt", json.dumps(doc["tensorrt"], separators=(",", ":"))))
    trust = trust_note(p, doc)
    if trust:
        rows.append(("trust", trust))
    for key, value in doc.items():
        if key not in _KNOWN and value is not None:
            rows.append((key, json.dumps(value, separators=(",", ":"))))
    width = max(len(k) for k, _ in rows)
    return "\n".join(terminal_safe(f"{k:<{width}}  {v}") for k, v in rows)  # (a sidecar's text shown, never acting)
