"""Name -> model. ``tv:NAME``, ``timm:NAME[.TAG]``, ``pm:NAME``, ``package.module:function``, or a bare name.

A bare name resolves to torchvision when torchvision has it (``resnet50`` is torchvision's), else to
timm; the names users know from Cadene's ``pretrainedmodels`` resolve to timm's ports of those nets
(``pm:NAME`` gives the originals, with the optional ``clsx[pretrainedmodels]``), and names only
pretrainedmodels has (``bninception``) resolve to it when it is installed.
The chosen source is logged (stderr in the CLI). Unknown names fail with close-match suggestions.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from clsx.core.files import first_line
from clsx.core.errors import ModelNotFoundError, SpecError
from clsx.core.spec import RANDOM_WEIGHTS, ModelSpec, PreprocessOverrides, qualified_name, random_weights_warning, resolve_preprocess
from clsx.zoo import custom_source, pretrainedmodels_source, timm_source, torchvision_source  # noqa: F401  (registers sources)
from clsx.zoo.registry import Source, ZooEntry, bare_sources, get_source, source_for_prefix, sources

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

# Names from Cadene's pretrainedmodels -> timm's ports of the same networks and weights.
PRETRAINEDMODELS_ALIASES: dict[str, str] = {
    "se_resnet50": "legacy_seresnet50",
    "se_resnet101": "legacy_seresnet101",
    "se_resnet152": "legacy_seresnet152",
    "se_resnext50_32x4d": "legacy_seresnext50_32x4d",
    "se_resnext101_32x4d": "legacy_seresnext101_32x4d",
    "senet154": "legacy_senet154",
    "inceptionv4": "inception_v4",
    "inception_v4": "inception_v4",
    "xception": "legacy_xception",
    "inceptionresnetv2": "inception_resnet_v2",
    "dpn68": "dpn68",
    "dpn68b": "dpn68b",
    "dpn92": "dpn92",
    "dpn98": "dpn98",
    "dpn107": "dpn107",
    "dpn131": "dpn131",
    "nasnetalarge": "nasnetalarge",
    "pnasnet5large": "pnasnet5large",
}


@dataclass(frozen=True)
class Resolved:
    source: Source
    name: str  # name within the source
    how: str  # one line explaining the choice, for the user

    @property
    def ref(self) -> str:
        return qualified_name(self.source.name, self.name)


@dataclass(frozen=True)
class FileModelName:
    """A model name read from a file (a checkpoint's sidecar), not typed by the user.

    It may name a zoo model (``tv:NAME``, ``timm:NAME``, ``pm:NAME``, a bare name), never code:
    :func:`resolve` refuses a ``module:function`` given this way, whatever ``allow_code`` says. It is
    deliberately not a ``str``: turning it into one (``str(name)``) gives ``NAME (from FILE)``, which
    names no model at all, so no conversion on the way can make it importable.
    """

    name: str
    origin: Path  # the file it was read from
    what: str = "checkpoint sidecar"

    def __str__(self) -> str:
        return f"{self.name} (from {self.what} {self.origin})"


def resolve(name: "str | FileModelName", *, allow_code: bool = True) -> Resolved:
    """Resolve a model name to (source, name). Raises ModelNotFoundError with suggestions.

    A ``package.module:function`` (the custom source: importing it runs that module) resolves only when
    ``allow_code`` is true and the name is a plain ``str``, i.e. typed on the command line or passed to
    the API; a :class:`FileModelName` (read from a sidecar) never does.
    """
    origin: FileModelName | None = None
    if isinstance(name, FileModelName):
        origin, name, allow_code = name, name.name, False
    if not isinstance(name, str):
        raise ModelNotFoundError(f"a model name is a string, not {type(name).__name__}")
    name = name.strip()
    if not name:
        raise ModelNotFoundError("empty model name" + (f" in {origin.what} {origin.origin}" if origin else ""))
    if ":" in name:
        prefix, rest = name.split(":", 1)
        src = source_for_prefix(prefix)
        if src is not None:
            src.ensure_available()
            if src.has(rest):
                return Resolved(src, rest, f"{src.name}:{rest}")
            raise ModelNotFoundError(f"{src.name} has no model {rest!r}{_suggest(rest, _qualified_names([src]))}")
        if custom_source.is_custom_ref(name):
            if not allow_code:
                raise _code_refused(name, origin)
            return Resolved(get_source("custom"), name, f"custom model {name}")
        raise ModelNotFoundError(
            f"unknown model source {prefix!r} in {name!r}: use tv:NAME, timm:NAME, pm:NAME or package.module:function"
        )
    alias = PRETRAINEDMODELS_ALIASES.get(name)
    for src in bare_sources():
        if src.name == "timm" and alias is not None:
            return Resolved(src, alias, f"timm:{alias} (timm's port of pretrainedmodels' {name}){_original_hint(name)}")
        if src.has(name):
            if src.name == "pretrainedmodels":
                return Resolved(src, name, f"pm:{name} (Cadene's pretrainedmodels; torchvision and timm have no {name})")
            return Resolved(src, name, f"{src.name}:{name}")
    candidates = _qualified_names(bare_sources())
    for alias, port in PRETRAINEDMODELS_ALIASES.items():  # a bare alias builds one model: suggest it as typed
        if alias != port or alias not in candidates:
            candidates.setdefault(alias, []).insert(0, alias)
    raise ModelNotFoundError(f"unknown model {name!r}{_suggest(name, candidates)}")


def _code_refused(name: str, origin: FileModelName | None) -> ModelNotFoundError:
    if origin is None:
        return ModelNotFoundError(f"{name!r} names code (a module:function), which is accepted only from the command line or an API argument")
    return ModelNotFoundError(
        f"{origin.what} {origin.origin}: its model {name!r} names code (a module:function); a sidecar may name a zoo "
        f"model (tv:NAME, timm:NAME, pm:NAME or a bare name), never code to import. To run your own model, name it "
        f"yourself: clsx infer {name} --weights CHECKPOINT (or clsx.open(CHECKPOINT, model={name!r}))"
    )


def _original_hint(name: str) -> str:
    """`; pm:NAME gives the original` when pretrainedmodels has that name (install hint if missing)."""
    pm = get_source("pretrainedmodels")
    if pm.has(name):
        return f"; pm:{name} gives the original"
    if name in pretrainedmodels_source.shipped_names() and not pm.names():
        return f"; pm:{name} gives the original (pip install 'clsx[pretrainedmodels]')"
    return ""


#: At most this many qualified names follow "did you mean" (the three closest names, in every source that has them).
MAX_SUGGESTIONS = 6


def _qualified_names(srcs: list[Source]) -> dict[str, list[str]]:
    """Name -> the qualified names that build it (``resnet18`` -> ``tv:resnet18, timm:resnet18, pm:resnet18``),
    sources in the order given."""
    out: dict[str, list[str]] = {}
    for src in srcs:
        for n in src.names():
            out.setdefault(n, []).append(qualified_name(src.name, n))
    return out


def _suggest(name: str, candidates: Mapping[str, list[str]]) -> str:
    """``; did you mean tv:resnet50, timm:resnet50, pm:resnet50, timm:resnet26?``: the closest names
    (``candidates``: name -> its qualified names), each as the qualified names that build it, no repeats."""
    plain = list(candidates)
    close = difflib.get_close_matches(name, plain, n=3, cutoff=0.6)
    if not close:
        close = sorted(c for c in plain if name.lower() in c.lower())[:3]
    refs = list(dict.fromkeys(ref for c in close for ref in candidates[c]))[:MAX_SUGGESTIONS]
    return f"; did you mean {', '.join(refs)}?" if refs else "; see `clsx models`"


def list_models(pattern: str = "*", source: str | None = None) -> list[ZooEntry]:
    """Buildable models matching a wildcard ``pattern``, without building any of them.

    ``pattern`` matches the name or the qualified name (``resnet*``, ``tv:resnet*``, ``*:resnet18``).
    ``source`` is a source name or prefix (``tv``, ``timm``, ``pm``); naming a source whose optional
    package is missing raises the install hint, while the full listing just leaves it out.
    """
    chosen = [s for s in sources() if s.name != "custom"]
    if source is not None:
        wanted = source_for_prefix(source)
        chosen = [s for s in chosen if wanted is not None and s.name == wanted.name]
        if not chosen:
            raise SpecError(f"unknown source {source!r}: use torchvision (tv), timm or pretrainedmodels (pm)")
        chosen[0].ensure_available()
    chosen.sort(key=lambda s: s.bare_priority if s.bare_priority is not None else 99)
    entries: list[ZooEntry] = []
    for src in chosen:
        names = sorted((n for n in src.names() if fnmatch.fnmatchcase(n, pattern)
                        or fnmatch.fnmatchcase(qualified_name(src.name, n), pattern)), key=_natural_key)
        entries.extend(src.entry(n) for n in names)
    return entries


def _natural_key(name: str) -> list[Any]:
    """resnet18 < resnet34 < resnet101 (timm's natural sort)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


@dataclass
class LoadedModel:
    """A built network, in eval mode, with the spec that describes how to feed it."""

    module: "nn.Module"
    spec: ModelSpec


def build(
    name: "str | FileModelName",
    *,
    weights: str | Path | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    labels: str | Path | None = None,
    preprocess: PreprocessOverrides | Mapping[str, Any] | None = None,
    allow_code: bool = True,
    random_weights: bool = False,
    warn_remap: bool = True,
) -> LoadedModel:
    """Build ``name`` with random, pretrained (``pretrained=True``) or file (``weights=``) weights.

    Neither given means random weights, which is warned about (stderr in the CLI: its predictions
    are meaningless) unless ``random_weights=True`` says they are intended (``--random-weights``).
    ``warn_remap=False``: a weights file whose keys map by position only is not warned about (for
    checkpoints known to need it, like clsx's own sample weights; see :func:`fit_state_dict`).
    Preprocessing precedence: ``preprocess`` (CLI flags) > checkpoint sidecar > the model's defaults.
    ``allow_code``: see :func:`resolve` (a :class:`FileModelName` never builds a ``module:function``).
    """
    from clsx.zoo.labels import imagenet_labels, read_labels
    from clsx.zoo.weights import fit_state_dict, load_checkpoint

    if weights is not None and pretrained:
        raise SpecError("pass either --weights FILE or --pretrained, not both")
    if random_weights and (weights is not None or pretrained):
        raise SpecError(f"--random-weights asks for untrained weights; it cannot go with {'--weights' if weights is not None else '--pretrained'}")
    resolved = resolve(name, allow_code=allow_code)
    log.info("model: %s", resolved.how)
    ckpt = load_checkpoint(weights) if weights is not None else None
    settings = ckpt.settings if ckpt else {}
    if num_classes is None and settings.get("num_classes"):
        num_classes = int(settings["num_classes"])

    module = resolved.source.build(resolved.name, num_classes=num_classes, pretrained=pretrained)
    module.eval()
    origin = RANDOM_WEIGHTS
    if not pretrained and ckpt is None and not random_weights:
        custom = resolved.source.name == "custom"  # its function may load weights itself: clsx cannot tell
        log.warning("%s", random_weights_warning(resolved.ref + (", unless that function loads trained weights itself" if custom else "")))
    if pretrained:
        origin = f"pretrained:{resolved.ref}"
    if ckpt is not None:
        how = fit_state_dict(module, ckpt.state_dict, source=f"weights file {ckpt.path.name}", warn_remap=warn_remap)
        origin = f"file:{ckpt.path.name} sha256:{ckpt.sha256} ({how})"

    spec = resolved.source.default_spec(resolved.name, num_classes)
    sidecar_pre = settings.get("preprocess", settings)
    pre = resolve_preprocess(spec.preprocess, sidecar_pre, preprocess)
    if spec.num_classes == 0:  # custom model: learn the class count from one forward pass
        spec = replace(spec, num_classes=_count_outputs(module, pre.input_size))
    elif pre.input_size != spec.preprocess.input_size:
        _check_runs_at(module, pre.input_size, spec.preprocess.input_size, resolved.ref, spec.num_classes)

    if labels is not None:
        label_names: tuple[str, ...] | None = read_labels(labels, spec.num_classes)
    elif settings.get("labels"):
        label_names = tuple(settings["labels"])
    elif spec.num_classes == 1000:
        label_names = imagenet_labels()
    elif spec.num_classes == 1001:  # TF-style heads with a background class at 0
        label_names = ("background", *imagenet_labels())
    else:
        label_names = None
    spec = replace(spec, preprocess=pre, labels=label_names, weights=origin)
    return LoadedModel(module=module, spec=spec)


def preset_spec(name: str) -> ModelSpec:
    """``--preset NAME``: a model clsx knows, as a spec (its eval preprocessing, class count and, for
    ImageNet heads, labels) without building the network, for graphs that carry none. A preset is a
    zoo model (``timm:NAME``, ``tv:NAME``, a bare name), never a ``module:function``."""
    from clsx.zoo.labels import imagenet_labels

    resolved = resolve(name, allow_code=False)
    spec = resolved.source.default_spec(resolved.name, None)
    labels: tuple[str, ...] | None = None
    if spec.num_classes == 1000:
        labels = imagenet_labels()
    elif spec.num_classes == 1001:
        labels = ("background", *imagenet_labels())
    return replace(spec, labels=labels)


def _check_runs_at(module: "nn.Module", size: tuple[int, int, int], native: tuple[int, int, int], ref: str, classes: int) -> None:
    """One zero-input forward pass when the input size differs from the model's own, so a fixed-size
    network (pooling with a set kernel, e.g. pm:bninception, pm:se_resnet50 at 224) fails here in one
    line rather than deep inside export or inference."""
    import torch

    fmt = "x".join
    with torch.no_grad():
        try:
            out = module(torch.zeros(1, *size))
            problem = None if isinstance(out, torch.Tensor) and tuple(out.shape) == (1, classes) else f"it returns {getattr(out, 'shape', type(out).__name__)}"
        except Exception as exc:
            problem = first_line(exc)
    if problem is not None:
        raise SpecError(
            f"{ref} does not run at input size {fmt(map(str, size))} ({problem}); it is built for "
            f"{fmt(map(str, native))}: drop --input-size or pass {fmt(map(str, native))}"
        )


def _count_outputs(module: "nn.Module", input_size: tuple[int, int, int]) -> int:
    import torch

    with torch.no_grad():
        try:
            out = module(torch.zeros(1, *input_size))
        except Exception as exc:
            raise SpecError(f"the model does not run on a 1x{'x'.join(map(str, input_size))} input ({exc}); pass --input-size") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise SpecError(f"the model must return logits of shape [N, classes]; got {getattr(out, 'shape', type(out).__name__)}")
    return int(out.shape[1])


__all__ = ["FileModelName", "LoadedModel", "Resolved", "ZooEntry", "build", "list_models", "preset_spec", "resolve", "PRETRAINEDMODELS_ALIASES"]
