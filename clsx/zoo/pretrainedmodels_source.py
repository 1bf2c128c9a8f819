"""Cadene's ``pretrainedmodels`` (``pm:NAME``): the original networks with their own input conventions.

Users coming from ``pretrainedmodels.__dict__['se_resnet50']()`` get exactly that network and the
preprocessing its weights were trained with, not timm's port (which bare names still pick). Each
model's ``pretrained_settings`` (the ``imagenet`` entry, or the only one there is, e.g. ``imagenet+5k``)
map onto :class:`~clsx.core.spec.PreprocessSpec` as pretrainedmodels' own ``utils.TransformImage`` uses
them: shorter side resized (bilinear) to ``floor(size / scale)`` with ``scale`` 0.875 unless the
settings say otherwise (xception: 0.8975), center crop, ``input_space`` -> ``channel_order``
(RGB/BGR), ``input_range`` [0, 1] or [0, 255] -> ``input_range`` 1 or 255, then mean/std (which
pretrainedmodels states in that channel order and range).

A settings entry that lacks a field gets the documented default in :data:`PM_DEFAULTS`, and the
build logs which ones it filled in. Listing reads ``data/pm_params.json`` (scripts/gen_pm_params.py)
so ``clsx models`` neither builds models nor imports pretrainedmodels. The package is optional:
``pip install 'clsx[pretrainedmodels]'``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import math
import warnings
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import ModuleType
from typing import TYPE_CHECKING, Any

from clsx.core.files import first_line
from clsx.core.optional import require
from clsx.core.errors import ModelNotFoundError, SpecError, WeightsError
from clsx.core.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, PreprocessSpec
from clsx.zoo.registry import Source, ZooEntry, register_source

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

#: What a ``pretrained_settings`` entry means when it leaves a field out (``scale`` is
#: ``TransformImage``'s default; only xception's settings carry their own).
PM_DEFAULTS: dict[str, Any] = {
    "input_space": "RGB",
    "input_size": [3, 224, 224],
    "input_range": [0, 1],
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
    "num_classes": 1000,
    "scale": 0.875,
}
_OPTIONAL_FIELDS = ("scale",)  # absent in almost every entry; filling it in is not worth a warning
#: pretrainedmodels' squeezenets return [N, C, 1, 1]; clsx's contract is [N, classes] logits.
_SPATIAL_LOGITS = frozenset({"squeezenet1_0", "squeezenet1_1"})


@dataclass(frozen=True)
class PmSettings:
    """One model's effective pretrained settings."""

    key: str | None  # the pretrained_settings entry used ("imagenet", "imagenet+5k" ...); None if none
    values: dict[str, Any]  # every PM_DEFAULTS field, from the entry or the default
    defaulted: tuple[str, ...]  # fields the entry lacked (scale excluded)


def _installed() -> bool:
    """pretrainedmodels and what its import needs but it does not declare (six, tqdm) are installed;
    checked without importing anything (importing pretrainedmodels takes over a second)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("pretrainedmodels", "six", "tqdm"))
    except (ImportError, ValueError):
        return False


def _pm() -> ModuleType:
    return require("pretrainedmodels", purpose="pm: models (Cadene's pretrainedmodels)")


@cache
def _shipped_table() -> dict[str, Any]:
    """data/pm_params.json as shipped (scripts/gen_pm_params.py), or {} if absent."""
    try:
        return json.loads(resources.files("clsx.zoo").joinpath("data/pm_params.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@cache
def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("pretrainedmodels")
    except importlib.metadata.PackageNotFoundError:
        return None


def _table() -> dict[str, Any]:
    """The shipped listing when it matches the installed pretrainedmodels version, else {}."""
    installed = _installed_version()
    if installed is None:
        return {}
    data = _shipped_table()
    return data if data.get("pretrainedmodels_version") == installed else {}


def shipped_names() -> frozenset[str]:
    """pretrainedmodels' model names as of the shipped table, installed or not (for hints)."""
    return frozenset(_shipped_table().get("models", {}))


def _names() -> list[str]:
    if not _installed():
        return []
    table = _table()
    if table:
        return sorted(table["models"])
    return sorted(_pm().model_names)


def settings_of(name: str) -> PmSettings:
    """The ``pretrained_settings`` of ``name`` that describe its default (ImageNet) weights."""
    entries = _pm().pretrained_settings.get(name) or {}
    key = "imagenet" if "imagenet" in entries else next(iter(entries), None)
    raw = dict(entries[key]) if key is not None else {}
    values = {f: raw.get(f, default) for f, default in PM_DEFAULTS.items()}
    defaulted = tuple(f for f in PM_DEFAULTS if f not in raw and f not in _OPTIONAL_FIELDS)
    return PmSettings(key, values, defaulted)


def preprocess_of(name: str, values: dict[str, Any]) -> PreprocessSpec:
    """pretrainedmodels settings -> the PreprocessSpec that reproduces ``utils.TransformImage``."""
    input_size = tuple(int(v) for v in values["input_size"])
    if len(input_size) != 3:
        raise SpecError(f"pm:{name}: input_size {list(input_size)} in its pretrained_settings is not [C, H, W]")
    space = str(values["input_space"]).upper()
    if space not in ("RGB", "BGR"):
        raise SpecError(f"pm:{name}: input_space {values['input_space']!r} in its pretrained_settings is not RGB or BGR")
    top = max(float(v) for v in values["input_range"])
    if top not in (1.0, 255.0):
        raise SpecError(f"pm:{name}: input_range {values['input_range']} in its pretrained_settings is not [0, 1] or [0, 255]")
    scale = float(values["scale"])
    return PreprocessSpec(
        input_size=input_size,  # type: ignore[arg-type]
        # TransformImage: Resize(floor(max(input_size) / scale)) on the shorter side, then CenterCrop.
        resize_size=int(math.floor(max(input_size[1:]) / scale)),
        interpolation="bilinear",  # torchvision Resize's default, which TransformImage uses
        mean=tuple(float(v) for v in values["mean"]),
        std=tuple(float(v) for v in values["std"]),
        channel_order=space,
        input_range=top,
    )


@register_source
class PretrainedModelsSource(Source):
    name = "pretrainedmodels"
    prefixes = ("pm", "pretrainedmodels")
    bare_priority = 2  # after torchvision and timm: only names neither has (bninception, polynet ...)

    def ensure_available(self) -> None:
        if not _installed():
            _pm()  # raises the one-line install hint

    def names(self) -> list[str]:
        return _names()

    def has(self, name: str) -> bool:
        return name in _names()

    def entry(self, name: str) -> ZooEntry:
        row = _table().get("models", {}).get(name)
        if row is not None:
            return ZooEntry(name, self.name, tuple(row["input_size"]), row.get("params"))  # type: ignore[arg-type]
        return ZooEntry(name, self.name, tuple(int(v) for v in settings_of(name).values["input_size"]), None)  # type: ignore[arg-type]

    def default_spec(self, name: str, num_classes: int | None = None) -> ModelSpec:
        settings = settings_of(name)
        if settings.defaulted:
            filled = ", ".join(f"{f}={PM_DEFAULTS[f]}" for f in settings.defaulted)
            where = f"pretrained_settings[{name!r}][{settings.key!r}]" if settings.key else f"pretrained_settings[{name!r}] (absent)"
            log.warning("pm:%s: %s lacks %s; using the documented defaults %s", name, where, ", ".join(settings.defaulted), filled)
        return ModelSpec(
            name=name,
            source=self.name,
            num_classes=num_classes or int(settings.values["num_classes"]),
            preprocess=preprocess_of(name, settings.values),
        )

    def build(self, name: str, *, num_classes: int | None, pretrained: bool) -> "nn.Module":
        pm = _pm()
        factory = getattr(pm, name, None)
        if name not in pm.model_names or not callable(factory):
            raise ModelNotFoundError(f"pretrainedmodels has no model {name!r}")
        settings = settings_of(name)
        with warnings.catch_warnings():
            # its torchvision wrappers call models.NAME(pretrained=False), which torchvision deprecates
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torchvision\.")
            if pretrained:
                model = self._build_pretrained(pm, name, num_classes)
            else:
                model = factory(num_classes=num_classes or int(settings.values["num_classes"]), pretrained=None)
                if num_classes is not None and _head_outputs(model) != num_classes:
                    _replace_head(model, num_classes)  # its torchvision wrappers ignore num_classes
        if name in _SPATIAL_LOGITS:
            model.register_forward_hook(_flatten_logits)
        return model

    def _build_pretrained(self, pm: ModuleType, name: str, num_classes: int | None) -> "nn.Module":
        """pretrainedmodels' own download (torch.hub cache). The entry whose class count matches
        ``num_classes`` is used (``imagenet+background`` for 1001); otherwise the default entry, and
        the classifier is replaced by a fresh one with ``num_classes`` outputs."""
        entries = pm.pretrained_settings.get(name) or {}
        key = next((k for k, s in entries.items() if num_classes is not None and s.get("num_classes") == num_classes), None)
        key = key or settings_of(name).key
        if key is None or "url" not in entries[key]:
            raise WeightsError(f"pretrainedmodels has no pretrained weights for {name}")
        settings = entries[key]
        try:
            model = getattr(pm, name)(num_classes=settings["num_classes"], pretrained=key)
        except Exception as exc:  # urllib/HTTP/OS errors from torch.hub's download, or a broken file
            first = first_line(exc)
            raise WeightsError(
                f"could not get pretrainedmodels' {key!r} weights for {name} from {settings['url']} "
                f"({type(exc).__name__}: {first}); offline or where that host is gone, pass a checkpoint with --weights FILE"
            ) from None
        if num_classes is not None and num_classes != settings["num_classes"]:
            _replace_head(model, num_classes)
        return model


def _flatten_logits(module: "nn.Module", args: Any, output: Any) -> Any:
    return output.flatten(1)


def _head_outputs(model: "nn.Module") -> int | None:
    head = getattr(model, "last_linear", None) or getattr(model, "last_conv", None)
    return getattr(head, "out_features", None) or getattr(head, "out_channels", None)


def _replace_head(model: "nn.Module", num_classes: int) -> None:
    """Swap pretrainedmodels' classifier (``last_linear``, or ``last_conv`` in squeezenets) for a
    fresh one with ``num_classes`` outputs (fine-tuning start)."""
    from torch import nn

    for attr in ("last_linear", "last_conv"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return
        if isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1):
            setattr(model, attr, nn.Conv2d(head.in_channels, num_classes, kernel_size=1, bias=head.bias is not None))
            return
    raise WeightsError("cannot find pretrainedmodels' classifier (last_linear / last_conv) to resize for --num-classes")
