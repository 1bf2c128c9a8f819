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
    "ModelSpec": ("clsx.spec", "ModelSpec"),
    "PreprocessSpec": ("clsx.spec", "PreprocessSpec"),
    "PreprocessOverrides": ("clsx.spec", "PreprocessOverrides"),
    "preprocess": ("clsx.preprocess", "preprocess"),
    "preprocess_batch": ("clsx.preprocess", "preprocess_batch"),
    "load_image": ("clsx.preprocess", "load_image"),
    "ClsxError": ("clsx.errors", "ClsxError"),
    "open": ("clsx.runtimes.registry", "open"),
    "Classifier": ("clsx.classifier", "Classifier"),
    "Prediction": ("clsx.classifier", "Prediction"),
    "predict_with_ray": ("clsx.scale.ray_infer", "predict_with_ray"),
    "write_triton_repository": ("clsx.scale.triton_repo", "write_triton_repository"),
    "export_onnx": ("clsx.exporter", "export_onnx"),
    "convert_fp16": ("clsx.exporter", "convert_fp16"),
    "export_aoti": ("clsx.exporter.aoti", "export_aoti"),
    "run_parity": ("clsx.parity", "run_parity"),
    "run_bench": ("clsx.bench", "run_bench"),
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
