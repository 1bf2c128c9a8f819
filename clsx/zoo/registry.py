"""Model sources (torchvision, timm, custom ...) and the registry that holds them.

A source is a small class registered with :func:`register_source`. It answers, without building
anything, which names it has and what their default spec is, and it builds an ``nn.Module`` on
request. Registering the same source name or prefix twice raises.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from clsx.core.spec import ModelSpec, qualified_name

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ZooEntry:
    """One row of ``clsx models``."""

    name: str
    source: str
    input_size: tuple[int, int, int]
    params: int | None  # None when unknown without building the model

    @property
    def qualified(self) -> str:
        """The name that picks this source whatever the others have: ``tv:resnet18``, ``timm:resnet18``."""
        return qualified_name(self.source, self.name)

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "input_size": list(self.input_size), "params": self.params,
                "qualified": self.qualified}


class Source:
    """Base class of model sources. Subclasses set ``name`` and ``prefixes`` and implement the rest."""

    name: ClassVar[str]
    prefixes: ClassVar[tuple[str, ...]]
    #: sources consulted for bare names, lowest first (torchvision before timm)
    bare_priority: ClassVar[int | None] = None

    def ensure_available(self) -> None:
        """Raise MissingDependencyError (with the pip extra) when the source's package is missing."""

    def names(self) -> list[str]:
        """Names this source can build; empty when its optional package is not installed."""
        raise NotImplementedError

    def has(self, name: str) -> bool:
        return name in self.names()

    def entry(self, name: str) -> ZooEntry:
        raise NotImplementedError

    def default_spec(self, name: str, num_classes: int | None = None) -> ModelSpec:
        raise NotImplementedError

    def build(self, name: str, *, num_classes: int | None, pretrained: bool) -> "nn.Module":
        raise NotImplementedError

    def list(self, pattern: str = "*") -> list[ZooEntry]:
        return [self.entry(n) for n in self.names() if fnmatch.fnmatchcase(n, pattern)]


_SOURCES: dict[str, Source] = {}
_PREFIXES: dict[str, str] = {}


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: instantiate and register a source. Duplicates raise ``ValueError``."""
    if cls.name in _SOURCES:
        raise ValueError(f"model source {cls.name!r} is already registered")
    for prefix in cls.prefixes:
        if prefix in _PREFIXES:
            raise ValueError(f"source prefix {prefix!r} is already registered by {_PREFIXES[prefix]!r}")
    _SOURCES[cls.name] = cls()
    for prefix in cls.prefixes:
        _PREFIXES[prefix] = cls.name
    return cls


def get_source(name: str) -> Source:
    return _SOURCES[name]


def source_for_prefix(prefix: str) -> Source | None:
    name = _PREFIXES.get(prefix)
    return _SOURCES[name] if name else None


def sources() -> list[Source]:
    return list(_SOURCES.values())


def bare_sources() -> list[Source]:
    """Sources that answer bare names, in priority order."""
    ranked = [s for s in _SOURCES.values() if s.bare_priority is not None]
    return sorted(ranked, key=lambda s: s.bare_priority)  # type: ignore[arg-type, return-value]

