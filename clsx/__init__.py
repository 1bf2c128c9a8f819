"""clsx: export, calibrate, compile and run image classifiers.

The public API is imported lazily: ``import clsx`` loads no torch, ONNX Runtime or TensorRT;
each attribute imports its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    "build": ("clsx.zoo", "build"),
    "resolve": ("clsx.zoo", "resolve"),
    "list_models": ("clsx.zoo", "list_models"),
    "LoadedModel": ("clsx.zoo", "LoadedModel"),
    "ModelSpec": ("clsx.core.spec", "ModelSpec"),
    "PreprocessSpec": ("clsx.core.spec", "PreprocessSpec"),
    "PreprocessOverrides": ("clsx.core.spec", "PreprocessOverrides"),
    "preprocess": ("clsx.core.preprocess", "preprocess"),
    "preprocess_batch": ("clsx.core.preprocess", "preprocess_batch"),
    "load_image": ("clsx.core.preprocess", "load_image"),
    "ClsxError": ("clsx.core.errors", "ClsxError"),
    "open": ("clsx.runtimes.registry", "open"),
    "Classifier": ("clsx.predict.classifier", "Classifier"),
    "Prediction": ("clsx.predict.classifier", "Prediction"),
    "predict_with_ray": ("clsx.scale.ray_infer", "predict_with_ray"),
    "write_triton_repository": ("clsx.scale.triton_repo", "write_triton_repository"),
    "export_onnx": ("clsx.exporter", "export_onnx"),
    "convert_fp16": ("clsx.exporter", "convert_fp16"),
    "export_aoti": ("clsx.exporter.aoti", "export_aoti"),
    "export_chain": ("clsx.exporter.chain", "export_chain"),
    "ExportOptions": ("clsx.exporter.chain", "ExportOptions"),
    "Int8Options": ("clsx.exporter.chain", "Int8Options"),
    "build_engine": ("clsx.exporter.engine", "build_engine"),
    "EngineOptions": ("clsx.exporter.engine", "EngineOptions"),
    "calibrate": ("clsx.calib", "calibrate"),
    "CalibOptions": ("clsx.calib", "CalibOptions"),
    "run_parity": ("clsx.tools.parity", "run_parity"),
    "run_bench": ("clsx.tools.bench", "run_bench"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'clsx' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
