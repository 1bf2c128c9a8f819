"""The tensorrt backend: runs a serialized engine (``.plan``/``.engine``) on an NVIDIA GPU.

The plan stays raw (trtexec and C++ TensorRT load it unchanged); the clsx document lives in the
sidecar ``<plan>.json``, whose ``tensorrt.flavour`` says which library built it (``tensorrt`` or
``tensorrt_rtx``). Before deserializing, :func:`clsx.runtimes.trt_lib.check_engine_compatible` compares
the sidecar's flavour/version/compute capability with this machine, so a mismatch is one clear line
instead of an opaque TensorRT failure.

Execution follows the TensorRT 10+ API shared by both flavours: ``set_input_shape`` for the batch,
``set_tensor_address`` on torch CUDA tensors, ``execute_async_v3`` on a dedicated (non-default) CUDA
stream. Batches beyond the optimization profile's maximum are split by :meth:`Runtime.run`, and a
chunk below its minimum is padded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from clsx.core.optional import require
from clsx.core.errors import ClsxError
from clsx.runtimes.base import DeviceError, Runtime, TensorInfo, io_from_document, with_layouts
from clsx.core.spec import ModelSpec, PreprocessOverrides

log = logging.getLogger(__name__)

# TensorRT DataType member name -> torch dtype attribute name
_TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}
_NUMPY_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
                "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


class EngineError(ClsxError):
    """An engine that cannot be loaded or run here."""


class TensorRTRuntime(Runtime):
    """A deserialized TensorRT (or TensorRT-RTX) engine with one execution context."""

    backend = "tensorrt"

    def __init__(
        self,
        target: str | Path,
        *,
        device: str | None = None,
        spec: ModelSpec | None = None,
        preprocess: PreprocessOverrides | Mapping[str, Any] | None = None,
        labels: str | Path | None = None,
    ) -> None:
        super().__init__(Path(target), device=device, spec=spec, preprocess=preprocess, labels=labels)
        if self.device.kind in ("cpu", "tensorrt"):
            raise DeviceError(f"TensorRT engines run on an NVIDIA GPU (device cuda[:N]); got device {self.device}")
        self._doc: dict[str, Any] | None = None
        self._trt: Any = None
        self._runtime: Any = None
        self._logger: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._torch_device: Any = None
        self._in_name = ""
        self._out_name = ""
        self._bounds: tuple[int, int | None] = (1, None)

    # -- metadata ---------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The sidecar document (``<plan>.json``); engines without one are refused."""
        if self._doc is None:
            from clsx.core.metadata import read_metadata

            self._doc = read_metadata(self.target)
        return self._doc

    @property
    def flavour(self) -> str:
        """``tensorrt`` or ``tensorrt_rtx``: the library that built this plan (from the sidecar)."""
        section = self.metadata().get("tensorrt") or {}
        flavour = section.get("flavour")
        if flavour not in ("tensorrt", "tensorrt_rtx"):
            raise EngineError(f"{self.target}: the sidecar does not say which TensorRT built the plan (tensorrt.flavour is {flavour!r})")
        return flavour

    def load_spec(self) -> ModelSpec:
        from clsx.core.metadata import spec_of

        return spec_of(self.metadata())

    def io_impl(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        if self._engine is None:
            return io_from_document(self.metadata())
        trt = self._trt
        ins, outs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dims = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            shape = tuple("batch" if d == -1 and k == 0 else ("?" if d == -1 else d) for k, d in enumerate(dims))
            info = TensorInfo(name, shape, _NUMPY_NAMES.get(self._engine.get_tensor_dtype(name).name, "?"))
            (ins if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outs).append(info)
        return with_layouts(ins, self.metadata()), outs

    # -- lifecycle --------------------------------------------------------------------------------

    def activate_impl(self) -> None:
        from clsx.runtimes.trt_lib import check_engine_compatible, import_tensorrt, make_logger

        doc = self.metadata()
        check_engine_compatible(doc, device=self.device.index)
        trt = import_tensorrt(self.flavour)
        torch = require("torch", purpose="CUDA memory for TensorRT engines")
        if not torch.cuda.is_available():
            raise DeviceError("TensorRT engines need an NVIDIA GPU; torch sees no CUDA device here")
        index = self.device.index
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device cuda:{index} requested but torch sees {torch.cuda.device_count()} GPU(s)")
        self._torch_device = torch.device("cuda", index)
        with torch.cuda.device(self._torch_device):
            self._logger = make_logger(trt)  # TensorRT's messages go to logging; errors are kept for the report
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(self.target.read_bytes())
            if self._engine is None:
                why = "; ".join(self._logger.errors[-2:]) or "no reason given"
                raise EngineError(f"{self.target}: {self.flavour} could not deserialize the engine ({why}); rebuild it here with clsx build")
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(self._torch_device)
        self._trt = trt
        self._bind_names()

    def _bind_names(self) -> None:
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) != trt.TensorIOMode.INPUT]
        if len(inputs) != 1 or len(outputs) < 1:
            raise EngineError(f"{self.target}: expected one image input and a logits output; the engine has inputs {inputs}, outputs {outputs}")
        self._in_name, self._out_name = inputs[0], outputs[0]
        batch_dim = int(engine.get_tensor_shape(self._in_name)[0])
        if batch_dim == -1:  # dynamic batch: profile 0 bounds it
            lo, _opt, hi = engine.get_tensor_profile_shape(self._in_name, 0)
            self._bounds = (int(lo[0]), int(hi[0]))
        else:
            self._bounds = (batch_dim, batch_dim)

    def deactivate_impl(self) -> None:
        # Release in reverse order of creation: the context needs the engine, the engine the runtime.
        self._context = None
        self._engine = None
        self._runtime = None
        self._stream = None

    def batch_bounds(self) -> tuple[int, int | None]:
        return self._bounds

    # -- execution --------------------------------------------------------------------------------

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        import torch

        engine, ctx = self._engine, self._context
        in_dtype = getattr(torch, _TORCH_DTYPES[engine.get_tensor_dtype(self._in_name).name])
        out_dtype = getattr(torch, _TORCH_DTYPES[engine.get_tensor_dtype(self._out_name).name])
        with torch.cuda.device(self._torch_device), torch.cuda.stream(self._stream):
            x = torch.from_numpy(batch).to(self._torch_device).to(in_dtype).contiguous()
            if not ctx.set_input_shape(self._in_name, tuple(x.shape)):
                raise EngineError(f"{self.target}: the engine rejects input shape {tuple(x.shape)} (profile batch {self._bounds})")
            out = torch.empty(tuple(ctx.get_tensor_shape(self._out_name)), dtype=out_dtype, device=self._torch_device)
            ctx.set_tensor_address(self._in_name, x.data_ptr())
            ctx.set_tensor_address(self._out_name, out.data_ptr())
            keep = [self._bind_output(extra) for extra in self._extra_outputs()]  # unread outputs still need memory
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                why = "; ".join(self._logger.errors[-2:]) or "no reason given"
                raise EngineError(f"{self.target}: TensorRT failed to run the batch ({why})")
            result = out.float().cpu()  # a synchronizing copy on this stream
        self._stream.synchronize()
        del keep
        return result.numpy()

    def _bind_output(self, name: str) -> Any:
        import torch

        dtype = getattr(torch, _TORCH_DTYPES[self._engine.get_tensor_dtype(name).name])
        buf = torch.empty(tuple(self._context.get_tensor_shape(name)), dtype=dtype, device=self._torch_device)
        self._context.set_tensor_address(name, buf.data_ptr())
        return buf

    def _extra_outputs(self) -> list[str]:
        engine, trt = self._engine, self._trt
        names = (engine.get_tensor_name(i) for i in range(engine.num_io_tensors))
        return [n for n in names if n != self._out_name and engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def describe_impl(self) -> str:
        import torch

        section = self.metadata().get("tensorrt") or {}
        lo, hi = self._bounds
        return (
            f"{self.flavour} {getattr(self._trt, '__version__', '?')} (plan built with {section.get('version', '?')}), "
            f"{self.target.name}, cuda:{self._torch_device.index} ({torch.cuda.get_device_name(self._torch_device)}), "
            f"profile batch {lo}..{hi}"
        )
