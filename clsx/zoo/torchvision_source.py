"""torchvision's classification models (``tv:NAME``); bare names prefer this source."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from clsx.core.errors import WeightsError
from clsx.core.spec import ModelSpec, PreprocessSpec
from clsx.zoo.registry import Source, ZooEntry, register_source

if TYPE_CHECKING:
    from torch import nn


@cache
def _names() -> tuple[str, ...]:
    import torchvision.models

    return tuple(torchvision.models.list_models(module=torchvision.models))


def _default_weights(name: str):
    import torchvision.models

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


@register_source
class TorchvisionSource(Source):
    name = "torchvision"
    prefixes = ("tv", "torchvision")
    bare_priority = 0

    def names(self) -> list[str]:
        return list(_names())

    def has(self, name: str) -> bool:
        return name in _names()

    def _preprocess(self, name: str) -> PreprocessSpec:
        weights = _default_weights(name)
        if weights is None:
            return PreprocessSpec()
        t = weights.transforms()  # torchvision's ImageClassification preset: the eval transform
        crop = int(t.crop_size[0])
        return PreprocessSpec(
            input_size=(3, crop, crop),
            resize_size=int(t.resize_size[0]),
            interpolation=t.interpolation.value,
            mean=tuple(float(v) for v in t.mean),
            std=tuple(float(v) for v in t.std),
        )

    def entry(self, name: str) -> ZooEntry:
        weights = _default_weights(name)
        params = int(weights.meta["num_params"]) if weights is not None else None
        return ZooEntry(name, self.name, self._preprocess(name).input_size, params)

    def default_spec(self, name: str, num_classes: int | None = None) -> ModelSpec:
        weights = _default_weights(name)
        default_classes = len(weights.meta["categories"]) if weights is not None else 1000
        return ModelSpec(name=name, source=self.name, num_classes=num_classes or default_classes, preprocess=self._preprocess(name))

    def build(self, name: str, *, num_classes: int | None, pretrained: bool) -> "nn.Module":
        import torchvision.models

        kwargs = {}
        if name in ("googlenet", "inception_v3") and not pretrained:
            # Keep the aux heads (torchvision checkpoints carry them; eval mode ignores them) but skip
            # the scipy truncnorm init, which is slow and pointless for weights about to be replaced.
            kwargs["init_weights"] = False
        if pretrained:
            weights = _default_weights(name)
            if weights is None:
                raise WeightsError(f"torchvision has no pretrained weights for {name}")
            try:
                model = torchvision.models.get_model(name, weights=weights, **kwargs)
            except Exception as exc:  # urllib/HTTP/OS errors from torch.hub's download
                raise WeightsError(
                    f"could not download torchvision's pretrained weights for {name} ({type(exc).__name__}: {exc}); "
                    "offline, pass a checkpoint with --weights FILE"
                ) from None
            if num_classes is not None and num_classes != len(weights.meta["categories"]):
                _replace_head(model, num_classes)
            return model
        default = _default_weights(name)
        if name.startswith("vit_") and default is not None:
            # A ViT's position embedding is sized for one input. Build it for the size of the default
            # weights' preset, which is the spec clsx reports (vit_h_14: SWAG at 518 px, not the
            # builder's 224), so `--weights` checkpoints of those weights load and the spec is true.
            kwargs["image_size"] = int(default.transforms().crop_size[0])
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes or 1000, **kwargs)


def _replace_head(model: "nn.Module", num_classes: int) -> None:
    """Swap the last Linear layer for a fresh one with ``num_classes`` outputs (fine-tuning start)."""
    from torch import nn

    parent, attr, last = None, None, None
    for mod_name, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                parent, attr, last = module, child_name, child
    if parent is None or last is None or attr is None:
        raise WeightsError("cannot find a Linear classifier head to resize for --num-classes")
    setattr(parent, attr, nn.Linear(last.in_features, num_classes))
