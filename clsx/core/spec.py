"""Model and preprocessing specifications: frozen dataclasses with a JSON round-trip.

A :class:`PreprocessSpec` says how an image becomes the model's input tensor; a :class:`ModelSpec`
says what the network is (source, classes, labels, weights origin) and carries its PreprocessSpec.
Both are resolved once (:func:`resolve_preprocess`) and then travel, unchanged, inside every artifact
clsx writes, so every path that reads an image (export verification, calibration, inference, parity,
the C++ library) feeds the model the same tensor.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from clsx.core.errors import SpecError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
DEFAULT_CROP_PCT = 0.875


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image file becomes one CHW float32 tensor.

    The pipeline (see :mod:`clsx.core.preprocess`): decode, EXIF transpose, convert to RGB (or L when
    ``input_size[0] == 1``), resize the shorter side to ``resize_size`` with ``interpolation``,
    center-crop ``input_size[1:]``, scale to ``[0, input_range]``, reorder channels to
    ``channel_order``, then ``(x - mean) / std``. ``mean``/``std`` are in units of ``input_range``.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)  # C, H, W
    resize_size: int = 256  # shorter side after resize, before the center crop
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"  # "RGB" or "BGR"
    input_range: float = 1.0  # 1.0 for [0, 1], 255.0 for [0, 255]

    def __post_init__(self) -> None:
        c, h, w = self.input_size
        if c not in (1, 3) or h < 1 or w < 1:
            raise SpecError(f"input size must be 1xHxW or 3xHxW with positive H, W; got {c}x{h}x{w}")
        if self.interpolation not in INTERPOLATIONS:
            raise SpecError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {self.interpolation!r}")
        if len(self.mean) != c or len(self.std) != c:
            raise SpecError(f"mean and std need {c} values each (one per channel); got {len(self.mean)} and {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise SpecError(f"std values must be positive; got {self.std}")
        if self.resize_size < 1:
            raise SpecError(f"resize size must be positive; got {self.resize_size}")
        if self.channel_order not in ("RGB", "BGR"):
            raise SpecError(f"channel order must be RGB or BGR; got {self.channel_order!r}")
        if self.input_range not in (1.0, 255.0):
            raise SpecError(f"input range must be 1 or 255; got {self.input_range}")

    @property
    def crop_pct(self) -> float:
        return min(self.input_size[1:]) / self.resize_size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["crop_pct"] = round(self.crop_pct, 6)  # informative; resize_size is authoritative
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PreprocessSpec":
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in known}
        for key in ("input_size", "mean", "std"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "resize_size" not in kw and "crop_pct" in d and "input_size" in kw:
            kw["resize_size"] = resize_for_crop_pct(kw["input_size"], float(d["crop_pct"]))
        return cls(**kw)


@dataclass(frozen=True)
class ModelSpec:
    """What a network is and how to feed it."""

    name: str  # canonical name within its source, e.g. "resnet50"
    source: str  # "torchvision" | "timm" | "pretrainedmodels" | "custom"
    num_classes: int
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    labels: tuple[str, ...] | None = None
    weights: str = "random"  # "random" | "pretrained:<tag>" | "file:<name> sha256:<hex>"

    @property
    def ref(self) -> str:
        """The fully qualified reference that resolves back to this model, e.g. ``tv:resnet50``."""
        prefix = {"torchvision": "tv:", "timm": "timm:", "pretrainedmodels": "pm:"}.get(self.source, "")
        return prefix + self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "ref": self.ref,
            "num_classes": self.num_classes,
            "weights": self.weights,
            "preprocess": self.preprocess.to_dict(),
            "labels": list(self.labels) if self.labels is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        labels = d.get("labels")
        return cls(
            name=d["name"],
            source=d["source"],
            num_classes=int(d["num_classes"]),
            preprocess=PreprocessSpec.from_dict(d.get("preprocess", {})),
            labels=tuple(labels) if labels is not None else None,
            weights=d.get("weights", "random"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        return cls.from_dict(json.loads(text))


def resize_for_crop_pct(input_size: tuple[int, int, int] | list[int], crop_pct: float) -> int:
    """timm's rule: the shorter side is resized to ``floor(crop / crop_pct)`` before the center crop."""
    if not 0 < crop_pct <= 2:  # timm has a few models above 1 (the crop then pads the border)
        raise SpecError(f"crop_pct must be in (0, 2]; got {crop_pct}")
    return int(math.floor(min(input_size[1:]) / crop_pct))


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``224`` -> (3, 224, 224); ``3x32x32`` or ``3,32,32`` -> (3, 32, 32); ``240x320`` -> (3, 240, 320)."""
    parts = [p for p in text.lower().replace(",", "x").split("x") if p.strip()]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) == 1:
        return (3, nums[0], nums[0])
    if len(nums) == 2:
        return (3, nums[0], nums[1])
    if len(nums) == 3:
        return (nums[0], nums[1], nums[2])
    raise SpecError(f"cannot parse input size {text!r}: use N, HxW or CxHxW (e.g. 224 or 3x32x32)")


def parse_floats(text: str, *, what: str) -> tuple[float, ...]:
    """``0.485,0.456,0.406`` -> a tuple of floats; a single value is used for every channel."""
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise SpecError(f"cannot parse {what} {text!r}: use comma-separated numbers, e.g. 0.5,0.5,0.5") from None
    if not vals:
        raise SpecError(f"{what} is empty")
    return vals


@dataclass(frozen=True)
class PreprocessOverrides:
    """Explicit settings (CLI flags or API arguments); ``None`` means "not given"."""

    input_size: tuple[int, int, int] | None = None
    crop_pct: float | None = None
    resize_size: int | None = None
    interpolation: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channel_order: str | None = None
    input_range: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def resolve_preprocess(
    model_default: PreprocessSpec,
    *layers: Mapping[str, Any] | PreprocessOverrides | None,
) -> PreprocessSpec:
    """Merge preprocessing settings with one documented precedence.

    ``layers`` go from lowest to highest priority after the model's defaults; clsx calls this as
    ``resolve_preprocess(model_default, checkpoint_or_sidecar, cli_flags)``, i.e.
    CLI flags > checkpoint/sidecar > model defaults.

    Each layer may set ``input_size``, ``resize_size`` or ``crop_pct``, ``interpolation``, ``mean``,
    ``std``, ``channel_order``, ``input_range``. A layer that changes ``input_size`` without saying
    how to resize keeps the model's crop_pct, so 224/256 becomes 32/36 rather than 32/256.
    Single-value mean/std are broadcast to every channel.
    """
    merged: dict[str, Any] = asdict(model_default)
    crop_pct: float = model_default.crop_pct
    for layer in layers:
        if layer is None:
            continue
        d = layer.as_dict() if isinstance(layer, PreprocessOverrides) else {k: v for k, v in layer.items() if v is not None}
        if "crop_pct" in d:
            crop_pct = float(d["crop_pct"])
            merged.pop("resize_size", None)
        if "resize_size" in d:
            merged["resize_size"] = int(d["resize_size"])
        elif "input_size" in d or "crop_pct" in d:
            merged.pop("resize_size", None)
        for key in ("input_size", "interpolation", "mean", "std", "channel_order", "input_range"):
            if key in d:
                merged[key] = tuple(d[key]) if key in ("input_size", "mean", "std") else d[key]
    channels = merged["input_size"][0]
    for key in ("mean", "std"):
        if len(merged[key]) == 1 and channels > 1:
            merged[key] = tuple(merged[key]) * channels
        if len(merged[key]) == 3 and channels == 1:
            merged[key] = (float(sum(merged[key]) / 3),)
    if "resize_size" not in merged:
        merged["resize_size"] = resize_for_crop_pct(merged["input_size"], crop_pct)
    merged["input_range"] = float(merged["input_range"])
    return PreprocessSpec(**merged)

