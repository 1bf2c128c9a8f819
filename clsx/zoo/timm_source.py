"""timm's models (``timm:NAME`` or ``timm:NAME.TAG``), including its ports of Cadene's pretrainedmodels."""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from clsx.core.files import first_line
from clsx.core.errors import WeightsError
from clsx.core.spec import DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, ModelSpec, PreprocessSpec, resize_for_crop_pct
from clsx.zoo.registry import Source, ZooEntry, register_source

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


@cache
def _names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@cache
def _param_table() -> dict[str, int]:
    """Parameter counts precomputed by scripts/gen_timm_params.py (building 1300 models to list is slow)."""
    try:
        data = json.loads(resources.files("clsx.zoo").joinpath("data/timm_params.json").read_text())
    except FileNotFoundError:
        return {}
    return data.get("params", {})


def _pretrained_cfg(name: str):
    import timm.models

    return timm.models.get_pretrained_cfg(name)  # "arch" -> its default tag; "arch.tag" -> that tag


@register_source
class TimmSource(Source):
    name = "timm"
    prefixes = ("timm",)
    bare_priority = 1

    def names(self) -> list[str]:
        return sorted(_names())

    def has(self, name: str) -> bool:
        arch = name.split(".", 1)[0]
        if arch not in _names():
            return False
        return "." not in name or self._cfg_or_none(name) is not None

    def _cfg_or_none(self, name: str):
        try:
            return _pretrained_cfg(name)
        except (RuntimeError, KeyError, ValueError):
            return None

    def _preprocess(self, name: str) -> PreprocessSpec:
        cfg = self._cfg_or_none(name)
        if cfg is None:
            return PreprocessSpec(interpolation="bicubic", resize_size=resize_for_crop_pct((3, 224, 224), DEFAULT_CROP_PCT))
        input_size = tuple(int(v) for v in cfg.input_size)
        crop_pct = float(cfg.crop_pct or DEFAULT_CROP_PCT)
        return PreprocessSpec(
            input_size=input_size,  # type: ignore[arg-type]
            resize_size=resize_for_crop_pct(input_size, crop_pct),
            interpolation=cfg.interpolation or "bilinear",
            mean=tuple(float(v) for v in (cfg.mean or IMAGENET_MEAN)),
            std=tuple(float(v) for v in (cfg.std or IMAGENET_STD)),
        )

    def entry(self, name: str) -> ZooEntry:
        return ZooEntry(name, self.name, self._preprocess(name).input_size, _param_table().get(name))

    def default_spec(self, name: str, num_classes: int | None = None) -> ModelSpec:
        cfg = self._cfg_or_none(name)
        if getattr(cfg, "crop_mode", None) not in ("center", None):
            log.warning("timm:%s evaluates with crop_mode=%r; clsx uses a center crop with the same crop_pct", name, cfg.crop_mode)
        default_classes = int(getattr(cfg, "num_classes", 0) or 1000)
        return ModelSpec(name=name, source=self.name, num_classes=num_classes or default_classes, preprocess=self._preprocess(name))

    def build(self, name: str, *, num_classes: int | None, pretrained: bool) -> "nn.Module":
        import timm

        kwargs = {"num_classes": num_classes} if num_classes is not None else {}
        if not pretrained:
            return timm.create_model(name, pretrained=False, **kwargs)
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # Hugging Face hub / URL errors when offline
            raise WeightsError(
                f"could not download timm's pretrained weights for {name} ({type(exc).__name__}: {first_line(exc)}); "
                "offline, pass a checkpoint with --weights FILE"
            ) from None
