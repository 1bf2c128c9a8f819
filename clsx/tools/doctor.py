"""``clsx doctor``: what this machine can run and build, probed rather than assumed.

ONNX Runtime lists providers it was *built* with, and silently falls back to CPU when one cannot load
(no CUDA, no TensorRT libraries). So every provider is tried with a one-node session and reported as
loading only when ``session.get_providers()`` says it is actually in use. The same goes for TensorRT:
a flavour counts only when it imports, and what it can build is derived from the GPUs torch sees.
What it can run (``run_targets``) follows from the same probes: ``.onnx`` on the providers that load,
model names on torch's devices, ``.plan`` engines only with their flavour and a GPU it runs on.
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from typing import Any

from clsx.core.errors import MissingDependencyError
from clsx.core.optional import require
from clsx import __version__
from clsx.core.files import first_line
from clsx.runtimes import trt_lib

log = logging.getLogger(__name__)


def diagnose() -> dict[str, Any]:
    """Everything ``clsx doctor`` reports, as a JSON-ready dict with stable keys."""
    torch_info = _torch_info()
    ccs = [g["compute_capability"] for g in torch_info.get("gpus", [])]
    report = {
        "clsx": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch_info,
        "onnxruntime": _onnxruntime_info(),
        "tensorrt": _tensorrt_info(),
        "preprocessing": _preprocessing_info(),
    }
    report["build_targets"] = _build_targets(report["tensorrt"], ccs)
    report["run_targets"] = _run_targets(report)
    return report


# ---------------------------------------------------------------------------------------------
# Probes


def _preprocessing_info() -> dict[str, Any]:
    from PIL import __version__ as pillow_version

    from clsx.core.preprocess import resampler

    which = resampler()
    note = ("clsx's vectorized port of Pillow's resampling (cpp/src/resample.c): Pillow's pixels, several times faster"
            if which == "native" else
            "Pillow (the native resampler was not built: no C compiler at install time, or CLSX_RESAMPLE=pillow); "
            "same pixels, slower")
    return {"resampler": which, "pillow": pillow_version, "note": note}


def _torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError as exc:
        return {"installed": False, "error": str(exc), "gpus": []}
    info: dict[str, Any] = {
        "installed": True,
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": False,
        "gpus": [],
    }
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
        for i in range(torch.cuda.device_count() if info["cuda_available"] else 0):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append({
                "index": i,
                "name": props.name,
                "compute_capability": f"sm{props.major}{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1),
            })
    except Exception as exc:  # a broken driver: report it, keep going
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _tiny_model_bytes() -> bytes:
    """A one-node ONNX graph (Relu) to open a session with."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def probe_provider(ort: Any, provider: str, model: bytes) -> tuple[bool, str]:
    """(loads, detail): open a session with only ``provider`` and see whether it is really in use."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sink = io.StringIO()
    try:
        # ORT prints its "EP Error ... falling back" banner on stdout: keep stdout for data.
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(model, sess_options=options, providers=[provider])
    except Exception as exc:
        return False, " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    used = session.get_providers()
    if provider in used:
        return True, "loads"
    return False, f"falls back to {', '.join(used) or 'nothing'}"


def _onnxruntime_info() -> dict[str, Any]:
    try:
        ort = require("onnxruntime")
    except MissingDependencyError as exc:
        return {"installed": False, "error": str(exc), "hint": "pip install 'clsx[onnxruntime]'", "providers": []}
    info: dict[str, Any] = {"installed": True, "version": ort.__version__, "package": _ort_package(), "providers": []}
    model = _tiny_model_bytes()
    for provider in ort.get_available_providers():
        loads, detail = probe_provider(ort, provider, model)
        info["providers"].append({"name": provider, "loads": loads, "detail": detail})
    return info


def _ort_package() -> str | None:
    """Which ONNX Runtime distribution is installed (onnxruntime, onnxruntime-gpu ...); two is a broken install."""
    from importlib import metadata

    names = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        names.append(dist)
    if len(names) > 1:
        log.warning("several ONNX Runtime packages are installed together (%s): keep exactly one", ", ".join(names))
    return ", ".join(names) or None


def _tensorrt_info() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flavour in trt_lib.FLAVOURS:
        try:
            trt = trt_lib.import_tensorrt(flavour)
        except Exception as exc:  # MissingDependencyError, or a crash inside a broken install
            out[flavour] = {"installed": False, "hint": f"pip install '{trt_lib.EXTRAS[flavour]}'", "error": first_line(exc)}
            continue
        out[flavour] = {"installed": True, "version": str(trt.__version__)}
    return out


def _build_targets(trt_info: dict[str, Any], gpu_ccs: list[str]) -> list[dict[str, Any]]:
    """Which engines this machine can build, and whether it could also run them."""
    targets = []
    rtx = trt_info.get("tensorrt_rtx", {})
    if rtx.get("installed"):
        runnable = [cc for cc in gpu_ccs if cc in trt_lib.RTX_COMPUTE_CAPABILITIES]
        targets.append({
            "target": "rtx",
            "flavour": "tensorrt_rtx",
            "can_build": True,
            "compute_capabilities": list(trt_lib.RTX_COMPUTE_CAPABILITIES),
            "can_run_here": bool(runnable),
            "note": "builds without a GPU" + ("" if runnable else "; running needs an RTX-class GPU (sm75-sm121, not Hopper)"),
        })
    std = trt_info.get("tensorrt", {})
    if std.get("installed"):
        targets.append({
            "target": "tensorrt",
            "flavour": "tensorrt",
            "can_build": bool(gpu_ccs),
            "compute_capabilities": sorted(set(gpu_ccs)),
            "can_run_here": bool(gpu_ccs),
            "note": "builds on, and for, this machine's GPU" if gpu_ccs else "needs a CUDA GPU to build and run",
        })
    return targets


#: ONNX Runtime provider -> the ``--device`` that selects it (see clsx.runtimes.onnxrt)
_ORT_DEVICES = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt"}


def _run_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What this machine can *run* (``clsx infer``/``parity``/``bench``), per kind of target, from what
    was probed: ONNX Runtime providers that really load, torch's CUDA devices, the TensorRT flavours and
    the GPUs they run on. ``devices`` are the ``--device`` values that work here."""
    t, o, trt = report["torch"], report["onnxruntime"], report["tensorrt"]
    cuda = bool(t.get("installed") and t.get("cuda_available") and t.get("gpus"))
    ccs = [g["compute_capability"] for g in t.get("gpus", [])]
    targets: list[dict[str, Any]] = []

    if o.get("installed"):
        loading = [p["name"] for p in o.get("providers", []) if p.get("loads")]
        devices = [_ORT_DEVICES[p] for p in loading if p in _ORT_DEVICES]
        missing = [p["name"] for p in o.get("providers", []) if not p.get("loads") and p["name"] in _ORT_DEVICES]
        note = "providers that load: " + (", ".join(p for p in loading if p in _ORT_DEVICES) or "none")
        if missing:
            note += f"; {', '.join(missing)} offered but does not load"
        elif "cuda" not in devices:
            note += "; no GPU provider"
    else:
        devices, note = [], f"ONNX Runtime not installed: {o.get('hint')}"
    targets.append({"artifact": ".onnx", "backend": "onnxrt", "can_run_here": bool(devices), "devices": devices, "note": note})

    if t.get("installed"):
        devices = ["cpu"] + (["cuda"] if cuda else [])
        note = "CPU and CUDA" if cuda else "CPU only: torch sees no CUDA device"
    else:
        devices, note = [], "torch not installed"
    targets.append({"artifact": "model name/.pth", "backend": "torch", "can_run_here": bool(devices),
                    "devices": devices, "note": note})

    for flavour in trt_lib.FLAVOURS:
        info = trt.get(flavour, {})
        if not info.get("installed"):
            can, note = False, f"{flavour} not installed: {info.get('hint')}"
        elif not cuda:
            can, note = False, "no GPU here: engines run on an NVIDIA GPU, and torch sees none"
        elif flavour == "tensorrt_rtx":
            runnable = [cc for cc in ccs if cc in trt_lib.RTX_COMPUTE_CAPABILITIES]
            can = bool(runnable)
            note = (f"engines built by {flavour} {info.get('version')} for {', '.join(sorted(set(runnable)))}" if can else
                    f"no GPU TensorRT-RTX runs on: this machine has {', '.join(sorted(set(ccs)))}; it runs sm75-sm121, not Hopper")
        else:
            can, note = True, f"engines built by {flavour} {info.get('version')} for this machine's GPU ({', '.join(sorted(set(ccs)))})"
        targets.append({"artifact": ".plan", "backend": "tensorrt", "flavour": flavour, "can_run_here": can,
                        "devices": ["cuda"] if can else [], "note": note})
    return targets


# ---------------------------------------------------------------------------------------------
# Text report


def format_report(report: dict[str, Any]) -> str:
    """The human-readable report (plain text, no markup, so it pipes cleanly)."""
    lines = [f"clsx {report['clsx']}  python {report['python']}  {report['platform']}"]
    t = report["torch"]
    if t.get("installed"):
        cuda = "CUDA available" if t["cuda_available"] else "no CUDA device"
        lines.append(f"torch        {t['version']} (built for CUDA {t['cuda_build'] or '-'}; {cuda})")
        for g in t["gpus"]:
            lines.append(f"  gpu {g['index']}      {g['name']}  {g['compute_capability']}  {g['memory_gb']} GB")
    else:
        lines.append(f"torch        not installed ({t.get('error')})")
    o = report["onnxruntime"]
    if o.get("installed"):
        lines.append(f"onnxruntime  {o['version']} ({o.get('package') or '?'})")
        for p in o["providers"]:
            lines.append(f"  {'ok ' if p['loads'] else 'no '} {p['name']}: {p['detail']}")
    else:
        lines.append(f"onnxruntime  not installed: {o['hint']}")
    for flavour, info in report["tensorrt"].items():
        if info.get("installed"):
            lines.append(f"{flavour:<12} {info['version']}")
        else:
            lines.append(f"{flavour:<12} not installed: {info['hint']}")
    pre = report.get("preprocessing")
    if pre:
        lines.append(f"resize       {pre['resampler']} (Pillow {pre['pillow']}): {pre['note']}")
    if report["build_targets"]:
        lines.append("build targets (clsx build --target ...):")
        for b in report["build_targets"]:
            state = "yes" if b["can_build"] else "no "
            ccs = ",".join(b["compute_capabilities"]) or "-"
            lines.append(f"  {state} {b['target']:<9} {ccs}  ({b['note']})")
    else:
        lines.append("build targets: none (install 'clsx[tensorrt-rtx]' or 'clsx[tensorrt]')")
    runs = report.get("run_targets") or []
    if runs:
        lines.append("run here (clsx infer/parity/bench --device ...):")
        width = max(len(r["artifact"]) for r in runs)
        for r in runs:
            state = "yes" if r["can_run_here"] else "no "
            backend = r.get("flavour") or r["backend"]
            devices = ",".join(r["devices"]) or "-"
            lines.append(f"  {state} {r['artifact']:<{width}}  {backend:<12} {devices:<10} ({r['note']})")
    return "\n".join(lines)

