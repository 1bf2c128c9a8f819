"""Runtimes: one API over torch, ONNX Runtime (``onnxrt``) and TensorRT (``tensorrt``).

``clsx.open(target)`` picks the backend (see :mod:`clsx.runtimes.registry`) and returns a
:class:`~clsx.runtimes.base.Runtime`; backend modules and their libraries are imported only when a
runtime of theirs is opened. Only runners live here: the TensorRT engine builder is :mod:`clsx.exporter.engine`.
"""

from __future__ import annotations

from clsx.runtimes.base import Device, Runtime, RuntimeInputError, TensorInfo, parse_device
from clsx.runtimes.registry import BackendError, backends, infer_backend, open, register_backend, split_backend

__all__ = [
    "BackendError",
    "Device",
    "Runtime",
    "RuntimeInputError",
    "TensorInfo",
    "backends",
    "infer_backend",
    "open",
    "parse_device",
    "register_backend",
    "split_backend",
]
