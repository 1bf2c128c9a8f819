"""``clsx.open``: pick the backend for an artifact or model name and construct its Runtime (cheaply).

Backend choice, in order:

1. an explicit ``backend=`` argument, or a ``@backend`` suffix on the target (``resnet50@torch``,
   ``model.onnx@onnxrt``) — both given and different is an error;
2. the artifact's file type: ``.onnx`` -> onnxrt; ``.plan``/``.engine`` -> tensorrt;
   ``.pth``/``.pt``/``.safetensors`` checkpoints -> torch;
3. anything else that is not an existing file is a model name (``resnet50``, ``timm:NAME``,
   ``package.module:function``) -> torch, built through :func:`clsx.zoo.build`.

Backend modules are imported only when a runtime of theirs is opened.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsx.core.errors import ClsxError

if TYPE_CHECKING:
    from clsx.runtimes.base import Runtime
    from clsx.zoo import FileModelName

# backend name -> "module:Class" (imported lazily)
_BACKENDS: dict[str, str] = {}

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".plan", ".engine")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")
_MODEL_OPTIONS = ("weights", "pretrained", "num_classes", "model")  # torch-only: they build a model


class BackendError(ClsxError):
    """An unknown backend, or a backend that cannot run the given target."""


def register_backend(name: str, ref: str) -> None:
    """Register a runtime class by ``"module:Class"`` reference. Registering a name twice raises."""
    if name in _BACKENDS:
        raise ValueError(f"runtime backend {name!r} is already registered ({_BACKENDS[name]})")
    _BACKENDS[name] = ref


register_backend("torch", "clsx.runtimes.torch:TorchRuntime")
register_backend("onnxrt", "clsx.runtimes.onnxrt:OnnxRuntime")
register_backend("tensorrt", "clsx.runtimes.tensorrt:TensorRTRuntime")


def backends() -> list[str]:
    return list(_BACKENDS)


def runtime_class(backend: str) -> type["Runtime"]:
    try:
        module, cls = _BACKENDS[backend].split(":")
    except KeyError:
        raise BackendError(f"unknown backend {backend!r}: use {', '.join(_BACKENDS)}") from None
    return getattr(importlib.import_module(module), cls)


def split_backend(target: str) -> tuple[str, str | None]:
    """``"resnet50@torch"`` -> ("resnet50", "torch"). Only a known backend name after the last ``@``
    counts, so paths that contain ``@`` keep working."""
    head, sep, tail = target.rpartition("@")
    if sep and head and tail in _BACKENDS:
        return head, tail
    return target, None


def infer_backend(target: str | Path) -> str:
    """The backend a target implies by its file type (see the module docstring)."""
    p = Path(target)
    suffix = p.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnxrt"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    if suffix in CHECKPOINT_SUFFIXES:
        return "torch"
    if p.is_file():
        raise BackendError(
            f"{p}: cannot tell which backend runs a {suffix or 'suffix-less'} file; "
            f"name it .onnx / .plan / .engine, or pass backend= (one of {', '.join(_BACKENDS)})"
        )
    if p.is_dir():
        raise BackendError(f"{p} is a folder, not a model artifact or model name")
    return "torch"  # a model name


def open(target: Any, backend: str | None = None, device: str | None = None, *, random_weights: bool = False,  # noqa: A001
         **opts: Any) -> "Runtime":
    """Open ``target`` (artifact path, model name, ``name@backend``, or a built ``clsx.LoadedModel``)
    as a :class:`~clsx.runtimes.base.Runtime`. Nothing heavy happens until the runtime is first used.

    Options pass to the backend: all take ``spec=`` (a ModelSpec for artifacts without clsx metadata),
    ``preprocess=`` (PreprocessOverrides) and ``labels=`` (a labels file); onnxrt and tensorrt take
    ``preset=`` (a model clsx knows, ``timm:tf_efficientnet_lite0``: its preprocessing and labels for a
    graph clsx did not make; ``preprocess=`` beats it, see :mod:`clsx.runtimes.foreign`); torch takes ``weights=``,
    ``pretrained=``, ``num_classes=`` and, for a checkpoint target, ``model=``; onnxrt takes
    ``threads=`` (intra-op threads, default: one per core), ``spin=``, ``providers=`` (an explicit ORT
    provider list) and ``trt_cache_dir=``; tensorrt takes nothing extra.

    Random weights (a model name without ``weights=``/``pretrained=``, an artifact whose metadata says
    ``weights: random``) are warned about on first use, unless ``random_weights=True`` says they are
    intended (``--random-weights``); with ``weights=``/``pretrained=`` it is an error.
    """
    if random_weights:  # now, not when the model is first built (rows may be streaming by then)
        checkpoint = isinstance(target, (str, Path)) and Path(split_backend(str(target))[0]).suffix.lower() in CHECKPOINT_SUFFIXES
        if opts.get("weights") is not None or opts.get("pretrained") or checkpoint:
            raise BackendError("random_weights=True (--random-weights) asks for untrained weights; it cannot go with "
                               + ("a checkpoint" if checkpoint else "weights= (--weights)" if opts.get("weights") is not None
                                  else "pretrained=True (--pretrained)"))
    runtime = _open(target, backend, device, **opts)
    runtime.random_weights = bool(random_weights)
    return runtime


def _open(target: Any, backend: str | None, device: str | None, **opts: Any) -> "Runtime":
    if backend is not None and backend not in _BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: use {', '.join(_BACKENDS)}")
    if not isinstance(target, (str, Path)):  # a LoadedModel or nn.Module already in memory
        chosen = backend or "torch"
        if chosen != "torch":
            raise BackendError(f"an in-memory model runs on the torch backend, not {chosen!r}; export it first")
        return runtime_class("torch")(target, device=device, **opts)

    text = str(target)
    if isinstance(target, str):
        text, suffix_backend = split_backend(text)
        if suffix_backend and backend and suffix_backend != backend:
            raise BackendError(f"{target!r} names backend {suffix_backend!r} but backend={backend!r} was passed")
        backend = backend or suffix_backend
    implied = infer_backend(text)
    chosen = backend or implied
    _check_pairing(text, chosen, implied)
    if chosen == "torch" and opts.get("preset"):
        raise BackendError(f"preset= (--preset) supplies preprocessing to ONNX graphs clsx did not make; {text} is a "
                           "model name or checkpoint with its own")
    if chosen == "torch" and Path(text).suffix.lower() in CHECKPOINT_SUFFIXES:
        model = opts.pop("model", None) or _checkpoint_model_name(Path(text))
        if opts.get("weights") is not None:
            raise BackendError(f"{text} is itself a checkpoint; do not pass weights= as well")
        opts["weights"] = Path(text)
        return runtime_class("torch")(model, device=device, **opts)
    given = sorted(k for k in _MODEL_OPTIONS if opts.get(k))
    if chosen != "torch" and given:
        flags = ", ".join(f"{k}=" for k in given)
        raise BackendError(f"{flags} apply to model names on the torch backend; {text} is a {chosen} artifact with its weights inside")
    if chosen != "torch" and not Path(text).exists():
        raise BackendError(f"{text}: no such file")
    return runtime_class(chosen)(Path(text) if chosen != "torch" else text, device=device, **opts)


def _check_pairing(text: str, chosen: str, implied: str) -> None:
    if chosen == implied:
        return
    if implied == "onnxrt" and chosen == "tensorrt":
        raise BackendError(f"{text} is an ONNX file; build an engine from it first (clsx build {text}), then open the .plan")
    if implied in ("onnxrt", "tensorrt") and chosen == "torch":
        raise BackendError(f"{text} is a {implied} artifact; the torch backend runs model names and checkpoints")
    if implied == "torch" and chosen in ("onnxrt", "tensorrt"):
        need = ".onnx" if chosen == "onnxrt" else ".plan"
        raise BackendError(f"the {chosen} backend runs {need} files, not {text!r}; export it first (clsx export)")
    if implied == "tensorrt" and chosen == "onnxrt":
        raise BackendError(f"{text} is a TensorRT engine; ONNX Runtime runs the .onnx it was built from")


def _checkpoint_model_name(ckpt: Path) -> "FileModelName":
    """The architecture of a bare checkpoint, from ``model`` in its ``<file>.json`` sidecar.

    The name comes back as a :class:`clsx.zoo.FileModelName`: a zoo model, never a ``module:function``
    (the zoo refuses to import code a file names). The sidecar is read through
    :func:`clsx.core.artifact.read_sidecar_text` (a link out of the checkpoint's folder is refused).
    """
    from clsx.core.artifact import read_sidecar_text
    from clsx.zoo import FileModelName

    found = read_sidecar_text(ckpt)
    if found is not None:
        side, text = found
        try:
            settings = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BackendError(f"checkpoint sidecar {side}: cannot read ({exc})") from None
        model = settings.get("model") if isinstance(settings, dict) else None
        if isinstance(model, dict):
            model = model.get("ref") or model.get("name")
        if isinstance(model, str) and model:
            return FileModelName(model, side)
    raise BackendError(
        f"{ckpt} is a checkpoint without an architecture; open the model name with weights=, "
        f"e.g. clsx.open('resnet50', weights='{ckpt}'), or pass model='resnet50'"
    )
