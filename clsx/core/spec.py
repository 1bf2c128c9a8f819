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
import numbers
import reprlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from clsx.core.errors import SpecError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
DEFAULT_CROP_PCT = 0.875

#: The largest image height or width clsx feeds a model (``input_size``, ``--input-size``, metadata
#: documents). 4096 px is 4.5x the largest input of any model the zoo builds (896 px, timm's
#: ``vit_so400m_patch14_siglip_gap_896``), while one 3x4096x4096 float32 tensor is already 192 MiB;
#: a typo (``--input-size 10000``) or a hostile document (12000 px: 1.6 GiB per image, times the
#: batch and the read-ahead window) is one line instead of a process killed for memory.
MAX_INPUT_SIDE = 4096
#: The largest ``resize_size`` (the shorter side before the center crop): twice the largest input,
#: i.e. crop_pct down to 0.5 at 4096 px (timm's smallest crop_pct is 0.75).
MAX_RESIZE_SIDE = 2 * MAX_INPUT_SIDE
#: The most classes a spec may declare: 1,000,000 (ImageNet-21k has 21,843; the largest public
#: classification heads have ~10^5). Bounds the logits and labels a document can make clsx allocate.
MAX_NUM_CLASSES = 1_000_000

_shown = reprlib.Repr()
_shown.maxstring, _shown.maxother, _shown.maxlist, _shown.maxtuple, _shown.maxdict, _shown.maxlevel = 60, 60, 6, 6, 4, 3


def show_value(value: Any) -> str:
    """A short, one-line rendering of a (possibly hostile) value for an error message, with its JSON
    kind: ``'1' (a string)``, ``true (a boolean)``, ``[[[...]]] (a list)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    kind = ("a string" if isinstance(value, str) else "a list" if isinstance(value, (list, tuple))
            else "an object" if isinstance(value, Mapping) else "an integer" if isinstance(value, numbers.Integral)
            else "a number" if isinstance(value, numbers.Real) else type(value).__name__)
    try:
        text = _shown.repr(value)
    except (RecursionError, ValueError):
        text = "..."
    return f"{text} ({kind})"


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (Python or numpy), not a bool: NaN and infinities are refused."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


class FieldError(SpecError):
    """A SpecError about one field: ``str()`` is ``"<field> <problem>"``; from_dict prefixes the path
    of the object the field belongs to (``model.preprocess.std must be ...``)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.field, self.problem = name, problem

    def under(self, prefix: str) -> SpecError:
        return FieldError(f"{prefix}.{self.field}", self.problem)


def _numbers(value: Any, name: str, count: int, *, positive: bool = False) -> tuple[float, ...]:
    what = "positive, finite numbers" if positive else "finite numbers"
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise FieldError(name, f"must be a list of {what}; got {show_value(value)}")
    if not all(is_number(v) and (v > 0 or not positive) for v in value):
        raise FieldError(name, f"must be {what}; got {show_value(list(value))}")
    if len(value) != count:
        raise FieldError(name, f"needs {count} values (one per channel of the input); got {len(value)}")
    return tuple(float(v) for v in value)


def check_input_size(value: Any, name: str = "input_size") -> tuple[int, int, int]:
    """``value`` as a valid (C, H, W): C 1 or 3, H and W from 1 to :data:`MAX_INPUT_SIDE`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 3 or not all(is_int(v) for v in value):
        raise FieldError(name, f"must be 3 integers (C, H, W); got {show_value(value)}")
    c, h, w = (int(v) for v in value)
    if c not in (1, 3) or not (1 <= h <= MAX_INPUT_SIDE and 1 <= w <= MAX_INPUT_SIDE):
        raise FieldError(name, f"must be 1xHxW or 3xHxW with H and W from 1 to {MAX_INPUT_SIDE}; got {c}x{h}x{w}")
    return c, h, w


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
    #: Decode large JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) while the decoded shorter
    #: side stays at least twice ``resize_size``, then the exact resize: ~5x faster on camera-size
    #: photos, not bit-exact (see the README); off by default; recorded in the metadata only when on.
    fast_decode: bool = False

    def __post_init__(self) -> None:
        # every field is checked (types included: specs are built from JSON documents too) and
        # normalised to plain Python ints/floats/tuples; a failure is a FieldError naming the field
        c, h, w = check_input_size(self.input_size)
        if not is_int(self.resize_size) or not 1 <= self.resize_size <= MAX_RESIZE_SIDE:
            raise FieldError("resize_size", f"must be an integer from 1 to {MAX_RESIZE_SIDE}; got {show_value(self.resize_size)}")
        if not isinstance(self.interpolation, str) or self.interpolation not in INTERPOLATIONS:
            raise FieldError("interpolation", f"must be one of {', '.join(INTERPOLATIONS)}; got {show_value(self.interpolation)}")
        mean = _numbers(self.mean, "mean", c)
        std = _numbers(self.std, "std", c, positive=True)
        if not isinstance(self.channel_order, str) or self.channel_order not in ("RGB", "BGR"):
            raise FieldError("channel_order", f"must be RGB or BGR; got {show_value(self.channel_order)}")
        if not is_number(self.input_range) or self.input_range not in (1.0, 255.0):
            raise FieldError("input_range", f"must be 1 or 255; got {show_value(self.input_range)}")
        if not isinstance(self.fast_decode, bool):
            raise FieldError("fast_decode", f"must be true or false; got {show_value(self.fast_decode)}")
        for name, value in (("input_size", (c, h, w)), ("resize_size", int(self.resize_size)), ("mean", mean), ("std", std),
                            ("input_range", float(self.input_range))):
            object.__setattr__(self, name, value)

    @property
    def crop_pct(self) -> float:
        return min(self.input_size[1:]) / self.resize_size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["crop_pct"] = round(self.crop_pct, 6)  # informative; resize_size is authoritative
        if not self.fast_decode:  # documents of exact-path specs stay as they were
            del d["fast_decode"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, prefix: str = "preprocess") -> "PreprocessSpec":
        """The spec a ``to_dict()`` object describes (absent fields take their defaults). Anything
        malformed is one SpecError naming the field under ``prefix`` (``preprocess.std must be ...``)."""
        if not isinstance(d, Mapping):
            raise SpecError(f"{prefix} must be an object; got {show_value(d)}")
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in known}
        if kw.get("resize_size", 0) is None:  # null: derived from crop_pct, as the C++ reader does
            del kw["resize_size"]
        try:
            if "resize_size" not in kw and d.get("crop_pct") is not None and "input_size" in kw:
                crop_pct = d["crop_pct"]
                if not is_number(crop_pct) or not 0 < crop_pct <= 2:
                    raise FieldError("crop_pct", f"must be a number in (0, 2]; got {show_value(crop_pct)}")
                kw["resize_size"] = resize_for_crop_pct(check_input_size(kw["input_size"]), float(crop_pct))
            return cls(**kw)
        except FieldError as exc:
            raise exc.under(prefix) from None


#: Element types an image input may have: float32/float16 take the normalized tensor; uint8 takes
#: pixels (0..255, after resize, crop and channel order) and normalizes inside the graph.
INPUT_DTYPES = ("float32", "float16", "uint8")
#: Axis orders of an image input: channels first (PyTorch's) or channels last (TensorFlow's, and
#: what a decoded image already is).
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class InputFormat:
    """The form of the batch a graph's image input takes: element type and axis order.

    ``float32``/``float16``: the host applies the whole :class:`PreprocessSpec` (scale, channel order,
    mean/std). ``uint8``: the host stops at the resized, center-cropped pixels in ``channel_order``
    (0..255); the graph casts, scales and normalizes itself (``mean``/``std`` then document what the
    graph does). The metadata records it as ``inputs[0].dtype`` and ``inputs[0].layout``
    (absent layout: NCHW). :func:`clsx.core.preprocess.preprocess` produces it.
    """

    dtype: str = "float32"
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        if self.dtype not in INPUT_DTYPES:
            raise SpecError(f"input dtype must be one of {', '.join(INPUT_DTYPES)}; got {show_value(self.dtype)}")
        if self.layout not in LAYOUTS:
            raise SpecError(f"input layout must be one of {', '.join(LAYOUTS)}; got {show_value(self.layout)}")

    @property
    def normalized_on_host(self) -> bool:
        """Whether the host applies mean/std (float inputs) or the graph does (uint8 pixels)."""
        return self.dtype != "uint8"

    def batch_shape(self, n: int, chw: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """The shape of a batch of ``n`` images of ``chw`` (C, H, W) in this layout."""
        c, h, w = chw
        return (n, c, h, w) if self.layout == "NCHW" else (n, h, w, c)

    def chw(self, image_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        """(C, H, W) of one image's shape in this layout (``(H, W, C)`` for NHWC)."""
        return tuple(image_shape) if self.layout == "NCHW" else (image_shape[2], image_shape[0], image_shape[1])

    @classmethod
    def of_tensor(cls, tensor: Mapping[str, Any]) -> "InputFormat":
        """The format an ``inputs[i]`` entry of a metadata document declares (``dtype``, ``layout``)."""
        return cls(dtype=tensor.get("dtype", "float32"), layout=tensor.get("layout") or "NCHW")

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "layout": self.layout}


#: What clsx's own exports take unless told otherwise.
FLOAT_NCHW = InputFormat()


#: ``ModelSpec.weights`` of an untrained network (neither a weights file nor pretrained weights).
RANDOM_WEIGHTS = "random"
#: The short prefix of each zoo source in a qualified name (``tv:resnet50``); custom models have none.
SOURCE_PREFIXES = {"torchvision": "tv", "timm": "timm", "pretrainedmodels": "pm"}


def qualified_name(source: str, name: str) -> str:
    """``("torchvision", "resnet50")`` -> ``tv:resnet50``: the name that resolves to that source only."""
    prefix = SOURCE_PREFIXES.get(source)
    return f"{prefix}:{name}" if prefix else name


def random_weights_warning(subject: str, *, artifact: bool = False) -> str:
    """The one warning every path that builds (``subject``: the model) or opens (``artifact``: a file
    whose metadata says ``weights: random``) a model with random weights gives, on stderr."""
    if artifact:
        return (f"random weights: predictions are meaningless; {subject} was exported without --weights FILE "
                f"or --pretrained; pass --random-weights (random_weights=True) if that is intended")
    return (f"random weights: predictions are meaningless; pass --weights FILE or --pretrained, or "
            f"--random-weights (random_weights=True) if that is intended ({subject})")


@dataclass(frozen=True)
class ModelSpec:
    """What a network is and how to feed it."""

    name: str  # canonical name within its source, e.g. "resnet50"
    source: str  # "torchvision" | "timm" | "pretrainedmodels" | "custom"
    num_classes: int
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    labels: tuple[str, ...] | None = None
    weights: str = "random"  # "random" | "pretrained:<tag>" | "file:<name> sha256:<hex>"

    def __post_init__(self) -> None:
        for name in ("name", "source", "weights"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise FieldError(name, f"must be a non-empty string; got {show_value(value)}")
        n = self.num_classes
        if not is_int(n) or not 0 <= n <= MAX_NUM_CLASSES:  # 0: not known yet (custom models learn it by a forward pass)
            raise FieldError("num_classes", f"must be an integer from 0 (not known yet) to {MAX_NUM_CLASSES}; got {show_value(n)}")
        object.__setattr__(self, "num_classes", int(n))
        if not isinstance(self.preprocess, PreprocessSpec):
            raise FieldError("preprocess", f"must be a PreprocessSpec; got {show_value(self.preprocess)}")
        labels = self.labels
        if labels is not None:
            if isinstance(labels, (str, bytes)) or not isinstance(labels, (tuple, list)):
                raise FieldError("labels", f"must be a list of strings or null; got {show_value(labels)}")
            bad = next((i for i, v in enumerate(labels) if not isinstance(v, str)), None)
            if bad is not None:
                raise FieldError("labels", f"must all be strings; labels[{bad}] is {show_value(labels[bad])}")
            if n and len(labels) != n:
                raise FieldError("labels", f"has {len(labels)} names but num_classes is {n}")
            object.__setattr__(self, "labels", tuple(labels))

    @property
    def ref(self) -> str:
        """The fully qualified reference that resolves back to this model, e.g. ``tv:resnet50``."""
        return qualified_name(self.source, self.name)

    @property
    def random_weights(self) -> bool:
        """Whether the weights are the untrained initialisation (``weights == "random"``)."""
        return self.weights == RANDOM_WEIGHTS

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
    def from_dict(cls, d: Mapping[str, Any], *, prefix: str = "model") -> "ModelSpec":
        """The spec a ``to_dict()`` object describes; anything malformed is one SpecError naming the
        field under ``prefix`` (``model.num_classes must be ...``)."""
        if not isinstance(d, Mapping):
            raise SpecError(f"{prefix} must be an object; got {show_value(d)}")
        missing = [k for k in ("name", "source", "num_classes") if k not in d]
        if missing:
            raise SpecError(f"{prefix}.{missing[0]} is missing")
        preprocess = PreprocessSpec.from_dict(d.get("preprocess", {}), prefix=f"{prefix}.preprocess")
        try:
            return cls(name=d["name"], source=d["source"], num_classes=d["num_classes"], preprocess=preprocess,
                       labels=d.get("labels"), weights=d.get("weights", "random"))
        except FieldError as exc:
            raise exc.under(prefix) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise SpecError(f"model spec: invalid JSON ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        return cls.from_dict(d)


def resize_for_crop_pct(input_size: tuple[int, int, int] | list[int], crop_pct: float) -> int:
    """timm's rule: the shorter side is resized to ``floor(crop / crop_pct)`` before the center crop."""
    if not 0 < crop_pct <= 2:  # timm has a few models above 1 (the crop then pads the border)
        raise SpecError(f"crop_pct must be in (0, 2]; got {crop_pct}")
    return int(math.floor(min(input_size[1:]) / crop_pct))


#: The smallest side ``S`` and ``HxW`` input sizes take; smaller ones need the explicit ``CxHxW`` form.
MIN_SHORT_FORM_SIDE = 8


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``--input-size`` -> (C, H, W). Three forms, by the number of parts:

    - ``S``: square, 3 channels: ``224`` -> (3, 224, 224);
    - ``HxW``: always height x width, 3 channels: ``240x320`` -> (3, 240, 320);
    - ``CxHxW`` (or ``C,H,W``), C 1 or 3: ``3x32x32`` -> (3, 32, 32), ``1x28x28`` -> (1, 28, 28).

    ``S`` and ``HxW`` refuse a side below :data:`MIN_SHORT_FORM_SIDE` (8 px): ``3x32`` is far more likely
    a channel count than a 3-px-high image (write ``3x32x32``); a really tiny input is written in full
    (``3x4x4``).
    """
    parts = [p for p in text.lower().replace(",", "x").split("x") if p.strip()]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    size = {1: lambda: (3, nums[0], nums[0]), 2: lambda: (3, nums[0], nums[1]), 3: lambda: tuple(nums)}.get(len(nums))
    if size is None:
        raise SpecError(f"cannot parse input size {text!r}: use S, HxW or CxHxW (e.g. 224, 240x320 or 3x32x32)")
    if len(nums) < 3 and 0 < min(nums) < MIN_SHORT_FORM_SIDE:
        form = "S" if len(nums) == 1 else "HxW"
        example = f"3x{nums[-1]}x{nums[-1]}" if len(nums) == 2 else f"3x{nums[0]}x{nums[0]}"
        raise SpecError(f"input size {text!r} is read as {form} (a side of {min(nums)} px); S and HxW sides are at "
                        f"least {MIN_SHORT_FORM_SIDE} px: for channels x height x width write CxHxW, e.g. {example}")
    try:
        return check_input_size(size())
    except FieldError as exc:
        raise SpecError(f"input size {text!r} is out of range: it {exc.problem}") from None


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
    fast_decode: bool | None = None

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
    ``std``, ``channel_order``, ``input_range``, ``fast_decode``. A layer that changes ``input_size`` without saying
    how to resize keeps the model's crop_pct, so 224/256 becomes 32/36 rather than 32/256.
    Single-value mean/std are broadcast to every channel.
    """
    merged: dict[str, Any] = asdict(model_default)
    crop_pct: float = model_default.crop_pct
    for layer in layers:
        if layer is None:
            continue
        d = _layer(layer)
        if "crop_pct" in d:
            crop_pct = float(d["crop_pct"])
            merged.pop("resize_size", None)
        if "resize_size" in d:
            merged["resize_size"] = int(d["resize_size"])
        elif "input_size" in d or "crop_pct" in d:
            merged.pop("resize_size", None)
        for key in ("input_size", "interpolation", "mean", "std", "channel_order", "input_range", "fast_decode"):
            if key in d:
                merged[key] = tuple(d[key]) if key in ("input_size", "mean", "std") else d[key]
    channels = check_input_size(merged["input_size"])[0]
    for key in ("mean", "std"):
        if len(merged[key]) == 1 and channels > 1:
            merged[key] = tuple(merged[key]) * channels
        if len(merged[key]) == 3 and channels == 1:
            merged[key] = (float(sum(merged[key]) / 3),)
    if "resize_size" not in merged:
        merged["resize_size"] = resize_for_crop_pct(merged["input_size"], crop_pct)
    return PreprocessSpec(**merged)


def _layer(layer: Mapping[str, Any] | PreprocessOverrides) -> dict[str, Any]:
    """One layer's settings (``None`` values dropped), their types checked before they are merged:
    a checkpoint sidecar is a document from a file like any other."""
    if isinstance(layer, PreprocessOverrides):
        d = layer.as_dict()
    elif isinstance(layer, Mapping):
        d = {k: v for k, v in layer.items() if v is not None}
    else:
        raise FieldError("preprocess", f"must be an object; got {show_value(layer)}")
    for key in ("input_size", "mean", "std"):
        if key in d and (isinstance(d[key], (str, bytes)) or not isinstance(d[key], (tuple, list))):
            raise FieldError(key, f"must be a list; got {show_value(d[key])}")
    if "crop_pct" in d and (not is_number(d["crop_pct"]) or not 0 < d["crop_pct"] <= 2):
        raise FieldError("crop_pct", f"must be a number in (0, 2]; got {show_value(d['crop_pct'])}")
    if "resize_size" in d and not (is_int(d["resize_size"]) or (is_number(d["resize_size"]) and float(d["resize_size"]).is_integer())):
        raise FieldError("resize_size", f"must be an integer; got {show_value(d['resize_size'])}")
    return d

