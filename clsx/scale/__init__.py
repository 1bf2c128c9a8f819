"""Beyond one process: hand clsx artifacts to the engines people already run.

- :mod:`clsx.scale.ray_infer`: ``clsx infer --ray``, batch inference over Ray Data (an actor pool of
  clsx Classifiers) writing the same rows as local ``clsx infer``.
- :mod:`clsx.scale.triton_repo`: ``clsx triton-repo``, a Triton Inference Server model repository
  (``config.pbtxt`` + labels) written from the artifacts' metadata.

Both read the same artifact metadata (:mod:`clsx.core.metadata`) as every other clsx path, so the model,
its preprocessing and its labels stay the same whichever engine runs it. Ray and tritonclient are
optional and imported only by the functions that need them.
"""

from __future__ import annotations

__all__ = ["predict_with_ray", "run_ray_infer", "write_triton_repository"]


def __getattr__(name: str):
    if name in ("predict_with_ray", "run_ray_infer"):
        from clsx.scale import ray_infer

        return getattr(ray_infer, name)
    if name == "write_triton_repository":
        from clsx.scale.triton_repo import write_triton_repository

        return write_triton_repository
    raise AttributeError(f"module 'clsx.scale' has no attribute {name!r}")
