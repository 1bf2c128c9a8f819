"""Checkpoint loading that never executes pickled code, and fitting a state_dict onto a model.

Accepted: ``.safetensors``; torch files loaded with ``weights_only=True`` holding a bare state_dict
or one nested under ``state_dict`` / ``model`` / ``model_state_dict`` / ``state_dict_ema`` / ``net``;
keys prefixed by ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile). When the key
names differ but the tensors match the model's in order and shape (a port from another codebase,
e.g. lukemelas EfficientNet weights into timm), they are mapped by position and the mapping is logged.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from clsx.core.files import first_line, sha256_file
from clsx.core.errors import WeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

NESTED_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema", "net", "params")
STRIP_PREFIXES = ("module.", "_orig_mod.")
# Buffers a checkpoint may legitimately lack (older torch did not save them).
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


@dataclass
class Checkpoint:
    """A loaded checkpoint: its tensors plus whatever settings travelled with it."""

    path: Path
    state_dict: dict[str, "torch.Tensor"]
    sha256: str
    settings: dict[str, Any] = field(default_factory=dict)  # from a sidecar <file>.json, if any


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load tensors from ``path`` safely; raise :class:`WeightsError` with the reason otherwise."""
    p = Path(path)
    if not p.exists():
        raise WeightsError(f"weights file {p}: no such file")
    if p.is_dir():
        raise WeightsError(f"weights file {p}: is a directory")
    if p.suffix == ".safetensors":
        raw = _load_safetensors(p)
    else:
        raw = _load_torch(p)
    state_dict = _extract_state_dict(raw, p)
    settings = _read_sidecar(p)
    return Checkpoint(path=p, state_dict=state_dict, sha256=sha256_file(p), settings=settings)


def _load_safetensors(p: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"weights file {p}: not a valid safetensors file ({exc})") from None


def _load_torch(p: Path) -> Any:
    import torch

    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = first_line(exc)
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise WeightsError(
                f"weights file {p}: refused, it contains pickled objects beyond tensors and plain containers, "
                "which could run code when loaded. Re-save it as a state_dict (torch.save(model.state_dict(), ...)) "
                f"or as .safetensors [{first}]"
            ) from None
        raise WeightsError(f"weights file {p}: corrupt or not a torch checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError) as exc:
        first = first_line(exc)
        raise WeightsError(f"weights file {p}: corrupt, truncated or not a torch checkpoint ({first})") from None


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _extract_state_dict(raw: Any, p: Path) -> dict[str, "torch.Tensor"]:
    import torch

    obj = raw
    for _ in range(3):  # nested at most a few levels ({'model': {'state_dict': ...}})
        if _is_tensor_dict(obj):
            break
        if not isinstance(obj, Mapping):
            break
        nested = next((obj[k] for k in NESTED_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if nested is None:
            break
        obj = nested
    if not isinstance(obj, Mapping):
        raise WeightsError(f"weights file {p}: holds a {type(raw).__name__}, not a state_dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else ""
        raise WeightsError(f"weights file {p}: no tensors found (top-level keys: {keys or 'none'})")
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _read_sidecar(p: Path) -> dict[str, Any]:
    """Settings saved next to a checkpoint as ``<file>.json`` (ModelSpec-like or flat preprocess keys),
    read through :func:`clsx.core.artifact.read_sidecar_text` (a link out of the folder is refused)."""
    from clsx.core.artifact import read_sidecar_text

    found = read_sidecar_text(p)
    if found is None:
        return {}
    sidecar, text = found
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"checkpoint sidecar {sidecar}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"checkpoint sidecar {sidecar}: expected a JSON object")
    log.info("read settings for %s from %s", p.name, sidecar)
    return data


def _is_optional(key: str) -> bool:
    return key.endswith(OPTIONAL_SUFFIXES)


def fit_state_dict(model: "nn.Module", ckpt: Mapping[str, "torch.Tensor"], *, source: str = "checkpoint",
                   warn_remap: bool = True) -> str:
    """Load ``ckpt`` into ``model``: by name when the keys agree, else by position when every tensor
    matches in order and shape. Returns how it was loaded ("by name" or "by position"); raises
    :class:`WeightsError` describing what does not fit. A mapping by position is a warning (the user
    should know their checkpoint's names did not match), or a debug line with ``warn_remap=False``
    (a checkpoint known to need it: clsx's own sample weights)."""
    target = model.state_dict()
    want = {k: v for k, v in target.items() if not _is_optional(k)}
    have = {k: v for k, v in ckpt.items() if not _is_optional(k)}

    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    mismatched = [k for k in want if k in have and tuple(have[k].shape) != tuple(want[k].shape)]

    if not missing and not unexpected and not mismatched:
        mapped = {k: v for k, v in ckpt.items() if k in target}
        how = "by name"
    elif len(want) == len(have) and all(tuple(a.shape) == tuple(b.shape) for a, b in zip(want.values(), have.values())):
        mapped = dict(zip(want.keys(), have.values()))
        first = next(((a, b) for a, b in zip(have.keys(), want.keys()) if a != b), None)
        example = f" (e.g. {first[0]} -> {first[1]})" if first else ""
        (log.warning if warn_remap else log.debug)(
            "%s: key names differ from the model's; mapped %d tensors by position, all shapes match%s", source, len(mapped), example)
        how = "by position"
    else:
        raise WeightsError(_describe_misfit(source, want, have, missing, unexpected, mismatched))

    result = model.load_state_dict(mapped, strict=False)
    still_missing = [k for k in result.missing_keys if not _is_optional(k)]
    if still_missing or result.unexpected_keys:  # pragma: no cover - guarded by the checks above
        raise WeightsError(f"{source}: could not load {still_missing[:5] or result.unexpected_keys[:5]}")
    return how


def _describe_misfit(source, want, have, missing, unexpected, mismatched) -> str:
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

    parts = [f"{source} does not fit this model ({len(have)} tensors in the checkpoint, {len(want)} in the model)"]
    if mismatched:
        shapes = [f"{k} {tuple(have[k].shape)} vs model {tuple(want[k].shape)}" for k in mismatched[:3]]
        parts.append("shape mismatch: " + "; ".join(shapes) + (f" (+{len(mismatched) - 3} more)" if len(mismatched) > 3 else ""))
        head = mismatched[-1]
        if have[head].ndim in (1, 2) and want[head].ndim == have[head].ndim and have[head].shape[0] != want[head].shape[0]:
            parts.append(f"if only the classifier differs, pass --num-classes {have[head].shape[0]}")
    if missing:
        parts.append(f"missing from checkpoint: {few(missing)}")
    if unexpected:
        parts.append(f"not in model: {few(unexpected)}")
    if len(want) != len(have) and not mismatched:
        parts.append("is it a checkpoint for another architecture?")
    return "; ".join(parts)
