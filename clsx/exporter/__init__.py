"""torch -> ONNX (FP32, FP16), verified on the spot, with the clsx metadata document inside; and the
export chain on to INT8, TensorRT engines and AOTInductor packages.

- :func:`export_onnx`: a built model (:class:`clsx.zoo.LoadedModel`) -> ``<name>.onnx`` with a dynamic
  batch axis; torch's dynamo exporter first, the TorchScript exporter as fallback.
- :func:`convert_fp16`: an FP32 clsx ONNX file -> ``<stem>.fp16.onnx`` (FP16 inside, FP32 inputs and
  outputs), verified against the FP32 graph on ONNX Runtime.
- :func:`build_engine`: an ONNX graph -> a TensorRT plan plus its sidecar (:class:`EngineOptions`).
- :func:`export_chain`: ``clsx export`` as a function: export [+FP16] -> optional INT8
  (:class:`Int8Options`) -> optional engine -> optional AOTInductor package (:class:`ChainResult`).

Importing this package loads neither torch nor ONNX Runtime; the functions import them when called.
"""

from __future__ import annotations

from clsx.exporter.artifacts import ExportError, ExportResult
from clsx.exporter.chain import ChainResult, ExportOptions, Int8Options, export_chain
from clsx.exporter.engine import BuildResult, EngineOptions, build_engine
from clsx.exporter.fp16 import convert_fp16
from clsx.exporter.onnx_export import export_onnx

__all__ = [
    "BuildResult",
    "ChainResult",
    "EngineOptions",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "Int8Options",
    "build_engine",
    "convert_fp16",
    "export_chain",
    "export_onnx",
]
