"""torch -> ONNX (FP32, FP16), verified on the spot, with the clsx metadata document inside.

- :func:`export_onnx`: a built model (:class:`clsx.zoo.LoadedModel`) -> ``<name>.onnx`` with a dynamic
  batch axis; torch's dynamo exporter first, the TorchScript exporter as fallback.
- :func:`convert_fp16`: an FP32 clsx ONNX file -> ``<stem>.fp16.onnx`` (FP16 inside, FP32 inputs and
  outputs), verified against the FP32 graph on ONNX Runtime.

Importing this package loads neither torch nor ONNX Runtime; the functions import them when called.
"""

from __future__ import annotations

from clsx.exporter.artifacts import ExportError, ExportResult
from clsx.exporter.fp16 import convert_fp16
from clsx.exporter.onnx_export import export_onnx

__all__ = ["ExportError", "ExportResult", "convert_fp16", "export_onnx"]
