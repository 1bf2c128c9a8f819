"""A user's own model: ``package.module:function`` returning an ``nn.Module``.

The module is imported the way ``python -m`` would find it (the current directory is on the path).
``function`` is called with ``num_classes=`` when it accepts that argument and a value was given.
Preprocessing defaults to ImageNet statistics at 3x224x224; ``--input-size``, ``--mean``, ``--std``
or a sidecar JSON next to the checkpoint set the real values.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import TYPE_CHECKING, Callable

from clsx.core.errors import ModelNotFoundError
from clsx.core.spec import ModelSpec, PreprocessSpec
from clsx.zoo.registry import Source, ZooEntry, register_source

if TYPE_CHECKING:
    from torch import nn


def is_custom_ref(name: str) -> bool:
    """``pkg.mod:fn`` (a dotted or plain module, a colon, a Python identifier)."""
    if name.count(":") != 1:
        return False
    module, fn = name.split(":")
    return bool(module) and fn.isidentifier() and all(part.isidentifier() for part in module.split("."))


def _load_factory(ref: str) -> Callable[..., "nn.Module"]:
    module_name, fn_name = ref.split(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelNotFoundError(f"cannot import module {module_name!r} for custom model {ref!r}: {exc}") from None
    factory = getattr(module, fn_name, None)
    if factory is None or not callable(factory):
        raise ModelNotFoundError(f"module {module_name!r} has no callable {fn_name!r} (custom model {ref!r})")
    return factory


@register_source
class CustomSource(Source):
    name = "custom"
    prefixes = ()

    def names(self) -> list[str]:
        return []  # nothing to list: any importable module:function is accepted

    def has(self, name: str) -> bool:
        return is_custom_ref(name)

    def entry(self, name: str) -> ZooEntry:
        return ZooEntry(name, self.name, PreprocessSpec().input_size, None)

    def default_spec(self, name: str, num_classes: int | None = None) -> ModelSpec:
        # num_classes 0 = "learn it from the built model" (clsx.zoo.build runs one forward pass)
        return ModelSpec(name=name, source=self.name, num_classes=num_classes or 0, preprocess=PreprocessSpec())

    def build(self, name: str, *, num_classes: int | None, pretrained: bool) -> "nn.Module":
        from torch import nn

        factory = _load_factory(name)
        kwargs = {}
        if num_classes is not None:
            try:
                params = inspect.signature(factory).parameters
            except (TypeError, ValueError):
                params = {}
            if "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
                kwargs["num_classes"] = num_classes
        if pretrained:
            try:
                params = inspect.signature(factory).parameters
            except (TypeError, ValueError):
                params = {}
            if "pretrained" not in params:
                raise ModelNotFoundError(f"custom model {name!r} takes no 'pretrained' argument; pass --weights FILE instead")
            kwargs["pretrained"] = True
        model = factory(**kwargs)
        if not isinstance(model, nn.Module):
            raise ModelNotFoundError(f"custom model {name!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model
