"""The Runtime base class every backend (torch, onnxrt, tensorrt) implements.

Polygraphy's runner shape: the public :meth:`Runtime.run` checks the input and the runtime's state,
splits or pads the batch to what the loaded model accepts, and calls :meth:`Runtime.run_impl`, which
each backend overrides. Construction is cheap (it records what to load); :meth:`activate` does the
heavy work (building a model, creating a session, deserializing an engine) and :meth:`deactivate`
frees it. ``run`` activates on first use, and ``with runtime:`` activates and deactivates explicitly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from clsx.core.errors import ClsxError, SpecError
from clsx.core.spec import FLOAT_NCHW, InputFormat, ModelSpec, PreprocessOverrides, random_weights_warning, resolve_preprocess

log = logging.getLogger(__name__)

Dim = int | str  # a fixed size, or the name of a dynamic axis ("batch")


class RuntimeInputError(ClsxError):
    """A batch that does not fit the model (wrong type, rank, dtype or image size)."""


class DeviceError(ClsxError):
    """A device this backend cannot use here (no GPU, provider missing, bad device string)."""


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: name, shape (ints, or axis names for dynamic axes) and numpy dtype name."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    layout: str | None = None  # an image input's axis order ("NCHW"/"NHWC"); None: NCHW, or not an image

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.layout is not None:
            d["layout"] = self.layout
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorInfo":
        return cls(name=str(d["name"]), shape=tuple(d.get("shape", ())), dtype=str(d.get("dtype", "float32")),
                   layout=d.get("layout"))


@dataclass(frozen=True)
class Device:
    """A parsed ``--device``: ``auto``, ``cpu``, ``cuda[:N]`` or (ONNX Runtime only) ``tensorrt[:N]``."""

    kind: str  # "auto" | "cpu" | "cuda" | "tensorrt"
    index: int = 0

    def __str__(self) -> str:
        return self.kind if self.kind in ("auto", "cpu") else f"{self.kind}:{self.index}"


def parse_device(device: str | Device | None) -> Device:
    """``None``/``auto`` -> Device("auto"); ``cuda`` -> cuda:0; ``gpu`` is an alias of ``cuda``."""
    if isinstance(device, Device):
        return device
    text = (device or "auto").strip().lower()
    kind, _, index = text.partition(":")
    kind = {"gpu": "cuda", "trt": "tensorrt"}.get(kind, kind)
    if kind not in ("auto", "cpu", "cuda", "tensorrt") or (index and not index.isdigit()) or (index and kind in ("auto", "cpu")):
        raise DeviceError(f"unknown device {device!r}: use auto, cpu, cuda[:N] or (ONNX Runtime) tensorrt[:N]")
    return Device(kind, int(index) if index else 0)


class Runtime:
    """A loaded (or loadable) classifier: ``run(NCHW float32) -> (N, classes) float32 logits``.

    Subclasses set :attr:`backend` and implement :meth:`activate_impl`, :meth:`deactivate_impl`,
    :meth:`run_impl`, :meth:`load_spec`, :meth:`io_impl` and :meth:`describe_impl`. They may override
    :meth:`batch_bounds` when the loaded model accepts only some batch sizes.
    """

    backend: ClassVar[str]
    #: The caller said random weights are intended (``clsx.open(..., random_weights=True)``,
    #: ``--random-weights``): an artifact whose metadata says ``weights: random`` opens without the
    #: warning, and the torch backend builds a model name with ``random_weights=True``.
    random_weights: bool = False
    #: Whether :attr:`spec` warns about an artifact's random weights (torch: :func:`clsx.zoo.build` does).
    _warns_random_weights: ClassVar[bool] = True

    def __init__(
        self,
        target: Any,
        *,
        device: str | Device | None = None,
        spec: ModelSpec | None = None,
        preprocess: PreprocessOverrides | Mapping[str, Any] | None = None,
        labels: str | Path | None = None,
        preset: str | None = None,
    ) -> None:
        self.target = target
        self.device = parse_device(device)
        self._spec_given = spec
        self._preprocess = preprocess
        self._labels_file = labels
        self._preset = preset
        self._overrides_applied = False  # a graph's spec completed from preset/flags has them already
        self._spec: ModelSpec | None = None
        self._active = False
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self._active

    def activate(self) -> "Runtime":
        """Load the model now (idempotent, thread-safe)."""
        with self._lock:
            if not self._active:
                self.activate_impl()
                self._active = True
                log.debug("activated %s", self.describe_impl())
        return self

    def deactivate(self) -> None:
        """Free what :meth:`activate` allocated; a later :meth:`run` loads again."""
        with self._lock:
            if self._active:
                self._active = False
                self.deactivate_impl()

    close = deactivate

    def __enter__(self) -> "Runtime":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- description -----------------------------------------------------------------------------

    @property
    def spec(self) -> ModelSpec:
        """The model's spec (artifact metadata, or the built model's), with ``preprocess``/``labels``
        overrides applied. Backends whose spec needs the model built (torch) activate here."""
        if self._spec is None:
            with self._lock:
                if self._spec is None:
                    base = self._spec_given or self.load_spec()
                    spec = base if self._overrides_applied else self._apply_overrides(base)
                    self.check_spec(spec, base)
                    self._spec = spec
                    if (base.random_weights and self._spec_given is None and self._warns_random_weights
                            and not self.random_weights):  # the metadata says so (a spec= given says nothing)
                        log.warning("%s", random_weights_warning(f"{self.target} ({base.ref})", artifact=True))
        return self._spec

    def document_spec(self, doc: Mapping[str, Any]) -> ModelSpec:
        """The spec an artifact's document gives: as stored, or (a partial document, read from a graph
        clsx did not make) completed from ``preset``/``preprocess``/``labels`` (:mod:`clsx.runtimes.foreign`)."""
        from clsx.core.metadata import is_partial, spec_of

        where = str(self.target)
        if is_partial(doc):
            from clsx.runtimes.foreign import spec_for_graph

            spec = spec_for_graph(doc, where=where, preset=self._preset, overrides=self._preprocess, labels=self._labels_file)
            self._overrides_applied = True
            return spec
        if self._preset:
            log.warning("%s carries clsx metadata: preset %s is not used (preprocessing flags still apply)", where, self._preset)
        return spec_of(doc, where=where)

    def _apply_overrides(self, spec: ModelSpec) -> ModelSpec:
        if self._preprocess is not None:
            spec = replace(spec, preprocess=resolve_preprocess(spec.preprocess, self._preprocess))
        if self._labels_file is not None:
            from clsx.zoo.labels import read_labels

            spec = replace(spec, labels=read_labels(self._labels_file, spec.num_classes))
        return spec

    @property
    def inputs(self) -> list[TensorInfo]:
        return self.io_impl()[0]

    @property
    def outputs(self) -> list[TensorInfo]:
        return self.io_impl()[1]

    @property
    def input_format(self) -> InputFormat:
        """The form of batch :meth:`run` takes (dtype, layout): the image input's, NCHW float32 by
        default. :func:`clsx.core.preprocess.preprocess` makes it from images."""
        try:
            first = self.inputs[0]
        except (ClsxError, IndexError):
            return FLOAT_NCHW
        return InputFormat.of_tensor(first.to_dict()) if first.dtype in ("float16", "uint8") or first.layout else FLOAT_NCHW

    def describe(self) -> str:
        """One line saying what actually runs (loads the model if it is not loaded yet)."""
        self.activate()
        return self.describe_impl()

    def __repr__(self) -> str:
        state = "active" if self._active else "not loaded"
        return f"<{type(self).__name__} {self.target!s} device={self.device} {state}>"

    # -- inference -------------------------------------------------------------------------------

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a batch in :attr:`input_format` (NCHW float32 unless the graph says otherwise).
        Batches the model cannot take at once are split into chunks (and a chunk below the model's
        minimum batch is zero-padded, its padding dropped)."""
        batch = self._check_batch(batch)
        self.activate()
        n = batch.shape[0]
        lo, hi = self.batch_bounds()
        if n == 0:
            return np.zeros((0, self._num_outputs()), dtype=np.float32)
        step = n if hi is None else max(1, hi)
        parts = []
        for start in range(0, n, step):
            chunk = batch[start : start + step]
            real = chunk.shape[0]
            if real < lo:
                pad = np.zeros((lo - real, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out = self.run_impl(chunk)
            parts.append(self._check_output(out, chunk.shape[0])[:real])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _check_batch(self, batch: Any) -> np.ndarray:
        fmt = self.input_format
        shown_fmt = f"{fmt.layout} {fmt.dtype}"
        if not isinstance(batch, np.ndarray):
            raise RuntimeInputError(f"run() takes a numpy array ({shown_fmt}); got {type(batch).__name__}")
        if batch.ndim != 4:
            raise RuntimeInputError(f"run() takes an {fmt.layout} batch (4 dimensions); got shape {batch.shape}")
        wrong_kind = (batch.dtype != np.uint8) if fmt.dtype == "uint8" else not np.issubdtype(batch.dtype, np.floating)
        if wrong_kind:
            raise RuntimeInputError(
                f"run() takes {fmt.dtype} tensors (preprocessed images, {shown_fmt}); got {batch.dtype}. "
                "Use clsx.Classifier or clsx.preprocess_batch to turn images into tensors"
            )
        want = self._input_image_shape()
        got = tuple(batch.shape[1:])
        if want is not None and any(isinstance(w, int) and w != g for w, g in zip(want, got)):
            shown = "x".join(str(w) for w in want)
            raise RuntimeInputError(f"the model takes N x {shown} inputs; got a batch of shape {batch.shape} ({fmt.layout})")
        return np.ascontiguousarray(batch, dtype=np.dtype(fmt.dtype))

    def _input_image_shape(self) -> tuple[Dim, ...] | None:
        """One image's shape as the input takes it (C, H, W for NCHW; H, W, C for NHWC)."""
        try:
            shape = self.inputs[0].shape
        except (ClsxError, IndexError):
            return None
        return tuple(shape[1:]) if len(shape) == 4 else None

    def _num_outputs(self) -> int:
        shape = self.outputs[0].shape
        if len(shape) == 2 and isinstance(shape[1], int):
            return shape[1]
        return self.spec.num_classes

    def _check_output(self, out: Any, n: int) -> np.ndarray:
        out = np.asarray(out)
        if out.ndim != 2 or out.shape[0] != n:
            raise SpecError(f"the model must return logits of shape [N, classes]; got {out.shape} for a batch of {n}")
        return out.astype(np.float32, copy=False)

    def share_cores(self) -> None:
        """Say that other CPU work (the decode-ahead pipeline's threads) runs beside this model: a backend
        that would otherwise busy-wait between kernels (ONNX Runtime's spinning threads) does not, unless
        its caller chose otherwise. Takes effect at activation; a no-op once active."""

    # -- backend hooks ---------------------------------------------------------------------------

    def batch_bounds(self) -> tuple[int, int | None]:
        """Smallest and largest batch the loaded model runs in one call (``None``: no limit)."""
        return 1, None

    def activate_impl(self) -> None:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def load_spec(self) -> ModelSpec:
        raise NotImplementedError

    def check_spec(self, spec: ModelSpec, base: ModelSpec) -> None:
        """Refuse a spec the model cannot take, before any image is preprocessed for it. ``spec`` has the
        overrides applied, ``base`` is as given or read from the artifact. Backends that can see their
        model's input shape cheaply override this (onnxrt: the graph's input)."""

    def io_impl(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        raise NotImplementedError

    def describe_impl(self) -> str:
        raise NotImplementedError


def io_from_document(doc: Mapping[str, Any]) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Inputs and outputs as an artifact's metadata document declares them."""
    return [TensorInfo.from_dict(d) for d in doc.get("inputs", [])], [TensorInfo.from_dict(d) for d in doc.get("outputs", [])]


def spec_io(spec: ModelSpec) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Inputs and outputs implied by a spec (for models that carry no graph signature)."""
    return (
        [TensorInfo("input", ("batch", *spec.preprocess.input_size), "float32")],
        [TensorInfo("logits", ("batch", spec.num_classes), "float32")],
    )
