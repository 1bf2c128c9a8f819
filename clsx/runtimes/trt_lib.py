"""Shared TensorRT helpers for the engine builder and the engine runtime.

Two TensorRT flavours share one code path:

* ``tensorrt`` -- standard TensorRT (datacenter and Jetson GPUs, 10.x and 11.x). Its builder needs a
  GPU and builds for that GPU (or for "Ampere and newer" with a hardware-compatibility level).
* ``tensorrt_rtx`` -- TensorRT for RTX GPUs. Its builder runs without a GPU and targets a list of
  compute capabilities; engines are tied to the exact TensorRT-RTX release that built them.

Everything here imports TensorRT lazily, so importing this module costs nothing. The runtime calls
:func:`check_engine_compatible` on an engine's sidecar *before* deserializing, so a flavour, version
or GPU mismatch is one clear line instead of an opaque TensorRT failure.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from types import ModuleType
from typing import Any, Callable, Mapping

from clsx.core.errors import ClsxError, MissingDependencyError
from clsx.core.optional import require

log = logging.getLogger(__name__)

FLAVOURS = ("tensorrt", "tensorrt_rtx")
EXTRAS = {"tensorrt": "clsx[tensorrt]", "tensorrt_rtx": "clsx[tensorrt-rtx]"}
# CLI spellings -> flavour
TARGET_ALIASES = {
    "tensorrt": "tensorrt",
    "trt": "tensorrt",
    "rtx": "tensorrt_rtx",
    "tensorrt_rtx": "tensorrt_rtx",
    "tensorrt-rtx": "tensorrt_rtx",
}
# TensorRT-RTX: what `IBuilderConfig.set_compute_capability` accepts (SM121 from 1.5 on).
RTX_COMPUTE_CAPABILITIES = ("sm75", "sm80", "sm86", "sm89", "sm120", "sm121")
# What a TensorRT-RTX engine built without explicit targets runs on ("8.0, 8.6, 8.9, 12.0 and later";
# Turing only when asked for explicitly, Hopper never).
RTX_DEFAULT_COMPUTE_CAPABILITIES = ("sm80", "sm86", "sm89", "sm120", "sm121")
# Hardware-compatibility levels of standard TensorRT (CLI value -> HardwareCompatibilityLevel name).
HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


class EngineBuildError(ClsxError):
    """TensorRT could not parse the ONNX graph or build an engine from it."""


class EngineIncompatibleError(ClsxError):
    """An engine built for another TensorRT flavour/version or another GPU than this machine's."""


# ---------------------------------------------------------------------------------------------
# Importing


def import_tensorrt(flavour: str) -> ModuleType:
    """Import ``tensorrt`` or ``tensorrt_rtx``; a missing (or broken) install is one line naming the extra."""
    if flavour not in FLAVOURS:
        raise ValueError(f"TensorRT flavour must be one of {FLAVOURS}, got {flavour!r}")
    return require(flavour, purpose="TensorRT engines")


def available_flavours() -> list[str]:
    """The TensorRT flavours that actually import here (a present but broken install is left out)."""
    found = []
    for flavour in FLAVOURS:
        if importlib.util.find_spec(flavour) is None:
            continue
        try:
            import_tensorrt(flavour)
        except MissingDependencyError as exc:
            log.debug("%s", exc)
            continue
        found.append(flavour)
    return found


def flavour_for_target(target: str) -> str:
    """``auto`` | ``tensorrt`` | ``rtx`` -> the flavour to build with; ``auto`` says what it picked and why."""
    key = target.strip().lower()
    if key != "auto":
        if key not in TARGET_ALIASES:
            raise ClsxError(f"unknown TensorRT target {target!r}: use auto, tensorrt or rtx")
        return TARGET_ALIASES[key]
    found = available_flavours()
    if not found:
        raise MissingDependencyError(
            "no TensorRT is installed: pip install 'clsx[tensorrt-rtx]' (RTX GPUs; builds without a GPU) "
            "or pip install 'clsx[tensorrt]' (datacenter/Jetson GPUs)"
        )
    if len(found) == 1:
        log.info("--target auto: building with %s (the only TensorRT installed)", found[0])
        return found[0]
    if gpu_compute_capability() is not None:
        log.info("--target auto: building with tensorrt (both flavours installed; a CUDA GPU is present)")
        return "tensorrt"
    log.info("--target auto: building with tensorrt_rtx (both flavours installed; no CUDA GPU, and only its builder runs without one)")
    return "tensorrt_rtx"


# ---------------------------------------------------------------------------------------------
# Versions and compute capabilities


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.13.2.6"`` -> ``(10, 13, 2, 6)``; non-numeric tails (``rc1``) are dropped."""
    parts = []
    for piece in str(version).split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def installed_version(flavour: str) -> str:
    return str(import_tensorrt(flavour).__version__)


def normalize_compute_capability(value: str) -> str:
    """``sm86``, ``SM_86``, ``8.6``, ``86`` -> ``sm86``."""
    text = str(value).strip().lower().replace("_", "")
    m = re.fullmatch(r"(?:sm)?(\d+)\.(\d)", text)
    if m:
        return f"sm{m.group(1)}{m.group(2)}"
    m = re.fullmatch(r"(?:sm)?(\d{2,3})", text)
    if m:
        return f"sm{m.group(1)}"
    raise ClsxError(f"not a compute capability: {value!r} (write sm86, 8.6 or 86)")


def compute_capability_value(cc: str) -> tuple[int, int]:
    """``sm86`` -> ``(8, 6)``; ``sm120`` -> ``(12, 0)``."""
    digits = normalize_compute_capability(cc)[2:]
    return int(digits[:-1]), int(digits[-1])


def gpu_compute_capability(device: int | None = None) -> str | None:
    """The compute capability (``sm89``) of a CUDA device as torch sees it, or None without a GPU."""
    try:
        import torch
    except ImportError:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        index = torch.cuda.current_device() if device is None else device
        major, minor = torch.cuda.get_device_capability(index)
    except Exception as exc:  # a broken driver is "no usable GPU" here, not a crash
        log.debug("torch.cuda probe failed: %s", exc)
        return None
    return f"sm{major}{minor}"


def gpu_name(device: int | None = None) -> str | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return str(torch.cuda.get_device_name(torch.cuda.current_device() if device is None else device))
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# Engine <-> machine compatibility


def check_engine_compatible(
    doc: Mapping[str, Any],
    *,
    device: int | None = None,
    installed: Callable[[str], str] = installed_version,
    gpu_cc: Callable[[int | None], str | None] = gpu_compute_capability,
) -> None:
    """Refuse an engine whose sidecar says it was built for another flavour, version or GPU.

    Called by the runtime before deserializing: TensorRT itself fails on such plans with a magic-tag
    or "version mismatch" error that does not say what to do. ``installed``/``gpu_cc`` are seams for tests.
    """
    if doc.get("artifact") != "tensorrt" or not isinstance(doc.get("tensorrt"), Mapping):
        raise EngineIncompatibleError(
            f"not a TensorRT engine's metadata (artifact={doc.get('artifact')!r}); build one with: clsx build MODEL.onnx"
        )
    trt_doc = doc["tensorrt"]
    flavour = trt_doc.get("flavour")
    built = str(trt_doc.get("version", ""))
    if flavour not in FLAVOURS:
        raise EngineIncompatibleError(f"engine metadata names an unknown TensorRT flavour {flavour!r}")
    rebuild = "rebuild it here with: clsx build MODEL.onnx"
    try:
        here = installed(flavour)
    except MissingDependencyError:
        raise MissingDependencyError(
            f"this engine was built with {flavour} {built}, which is not importable here; "
            f"install it with: pip install '{EXTRAS[flavour]}' (version {built}), or {rebuild}"
        ) from None
    b, h = version_tuple(built), version_tuple(here)
    if trt_doc.get("version_compatible") and flavour == "tensorrt":
        if not (h[:1] == b[:1] and h >= b):
            raise EngineIncompatibleError(
                f"engine built version-compatible with tensorrt {built} needs tensorrt {b[0]}.x >= {built}; "
                f"this machine has {here}; {rebuild}"
            )
    elif h[:3] != b[:3]:
        raise EngineIncompatibleError(
            f"engine built with {flavour} {built} cannot run on {flavour} {here} (TensorRT engines are tied to "
            f"the release that built them); {rebuild}"
        )

    cc = gpu_cc(device)
    if cc is None:
        raise EngineIncompatibleError("TensorRT engines run on an NVIDIA GPU, and torch.cuda sees none on this machine")
    targets = [normalize_compute_capability(c) for c in trt_doc.get("compute_capabilities") or []]
    level = trt_doc.get("hardware_compat", "none")
    if level == "ampere+":
        if compute_capability_value(cc) < (8, 0):
            raise EngineIncompatibleError(f"engine built for Ampere and newer GPUs (sm80+); this GPU is {cc}; {rebuild}")
        return
    if targets and cc not in targets:
        raise EngineIncompatibleError(
            f"engine built for compute capabilities {', '.join(targets)}; this GPU is {cc}; {rebuild}"
            + (" --compute-capability " + cc if flavour == "tensorrt_rtx" and cc in RTX_COMPUTE_CAPABILITIES else "")
        )


# ---------------------------------------------------------------------------------------------
# Logging TensorRT's own messages


def make_logger(trt: ModuleType) -> Any:
    """A ``trt.ILogger`` that forwards to ``logging`` and keeps the error messages for the one-line report.

    Built inside a function: the class subclasses a type of the lazily imported module.
    """

    class _Logger(trt.ILogger):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:  # noqa: A003 - TensorRT's name
            text = " ".join(str(msg).split())
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(text)
                log.debug("TensorRT error: %s", text)
            elif severity == trt.ILogger.Severity.WARNING:
                log.debug("TensorRT warning: %s", text)
            else:
                log.debug("TensorRT: %s", text)

    return _Logger()


def rtx_engine_validity(plan: bytes | memoryview) -> tuple[str, list[str]]:
    """TensorRT-RTX's own header check of a plan: ("valid" | "suboptimal" | "invalid", [diagnostics]).

    Reads only the plan's header. Without a GPU every plan is "invalid" for this machine; a damaged
    header still shows as ``malformed_engine`` there, which is what CPU-only tests can check.
    """
    trt = import_tensorrt("tensorrt_rtx")
    runtime = trt.Runtime(make_logger(trt))
    validity, bits = runtime.get_engine_validity(plan)
    names = [name.lower() for name, flag in trt.EngineInvalidityDiagnostics.__members__.items() if int(bits) & int(flag)]
    return validity.name.lower(), names
