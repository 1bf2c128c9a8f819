"""The torch backend: eager PyTorch on CPU or CUDA, for model names, checkpoints and in-memory models.

The model is built through :func:`clsx.zoo.build` on activation (or on first access to ``spec``,
which needs the built model: custom models learn their class count from a forward pass).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from clsx.core.optional import require
from clsx.core.errors import SpecError
from clsx.runtimes.base import DeviceError, Runtime, TensorInfo, spec_io
from clsx.core.spec import ModelSpec, PreprocessOverrides

if TYPE_CHECKING:
    from clsx.zoo import LoadedModel

log = logging.getLogger(__name__)


class TorchRuntime(Runtime):
    """Runs a ``torch.nn.Module`` in eval mode under ``torch.inference_mode``."""

    backend = "torch"
    _warns_random_weights = False  # clsx.zoo.build warns when it builds random weights

    def __init__(
        self,
        target: Any,
        *,
        device: str | None = None,
        weights: str | Path | None = None,
        pretrained: bool = False,
        num_classes: int | None = None,
        labels: str | Path | None = None,
        preprocess: PreprocessOverrides | Mapping[str, Any] | None = None,
        spec: ModelSpec | None = None,
    ) -> None:
        from clsx.zoo import FileModelName

        from_name = isinstance(target, (str, Path, FileModelName))
        # A name is built with the preprocessing/labels overrides (zoo.build applies them with the
        # documented precedence); an in-memory model gets them applied on top of its spec.
        super().__init__(
            target,
            device=device,
            spec=spec,
            preprocess=None if from_name else preprocess,
            labels=None if from_name else labels,
        )
        if self.device.kind == "tensorrt":
            raise DeviceError("device 'tensorrt' is an ONNX Runtime execution provider; torch runs on cpu or cuda")
        self._build_kw: dict[str, Any] = dict(
            weights=weights, pretrained=pretrained, num_classes=num_classes, labels=labels, preprocess=preprocess
        )
        self._loaded: "LoadedModel | None" = None
        self._built_random = False  # a build of ours had random weights (and said so)
        self._module: Any = None
        self._torch_device: Any = None

    def _load(self) -> "LoadedModel":
        """Build (once) the model this runtime wraps."""
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._materialize()
        return self._loaded

    def _materialize(self) -> "LoadedModel":
        from clsx.zoo import FileModelName, LoadedModel, build

        target = self.target
        if isinstance(target, (str, Path, FileModelName)):  # a FileModelName (from a sidecar) builds a zoo model, never code
            # random weights are warned about once (by build), not again when a deactivated runtime rebuilds
            loaded = build(target if isinstance(target, FileModelName) else str(target), **self._build_kw,
                           random_weights=self.random_weights or self._built_random)
            self._built_random = loaded.spec.random_weights
            return loaded
        if isinstance(target, LoadedModel):
            return target
        torch = require("torch")
        if isinstance(target, torch.nn.Module):
            if self._spec_given is None:
                raise SpecError("an nn.Module needs spec= (a clsx.ModelSpec saying how to feed it); or pass clsx.build(...)'s result")
            return LoadedModel(module=target.eval(), spec=self._spec_given)
        raise SpecError(f"cannot run {type(target).__name__} on the torch backend")

    def load_spec(self) -> ModelSpec:
        return self._load().spec

    def activate_impl(self) -> None:
        torch = require("torch")
        loaded = self._load()
        kind = self.device.kind
        if kind == "auto":
            kind = "cuda" if torch.cuda.is_available() else "cpu"
        if kind == "cuda":
            if not torch.cuda.is_available():
                raise DeviceError("device cuda requested but torch sees no CUDA GPU here (torch.cuda.is_available() is False)")
            if self.device.index >= torch.cuda.device_count():
                raise DeviceError(f"device cuda:{self.device.index} requested but torch sees {torch.cuda.device_count()} GPU(s)")
            self._torch_device = torch.device("cuda", self.device.index)
        else:
            self._torch_device = torch.device("cpu")
        self._module = loaded.module.eval().to(self._torch_device)

    def deactivate_impl(self) -> None:
        from clsx.zoo import FileModelName

        self._module = None
        if isinstance(self.target, (str, Path, FileModelName)):
            self._loaded = None  # we built it: let it go; a later activation builds it again
        if self._torch_device is not None and self._torch_device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(batch).to(self._torch_device, non_blocking=True)
        with torch.inference_mode():
            out = self._module(x)
        if isinstance(out, (tuple, list)):  # e.g. Inception's (logits, aux) outside eval
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise SpecError(f"the model must return a logits tensor; got {type(out).__name__}")
        return out.float().cpu().numpy()

    def io_impl(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        return spec_io(self.spec)

    def describe_impl(self) -> str:
        import torch

        dev = self._torch_device
        where = f"cuda:{dev.index} ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
        return f"torch {torch.__version__} eager, {self.spec.ref}, {where}"
