"""torch -> AOTInductor package (``model.pt2``) for the C++ library, with its sidecar ``model.pt2.json``.

An AOTInductor package is the model compiled ahead of time into a shared library (CPU here) plus
its weights, zipped into one ``.pt2`` file; C++ loads it with libtorch's
``torch::inductor::AOTIModelPackageLoader`` (see ``cpp/``) without Python. The clsx metadata
document (artifact ``aoti``) sits next to it as ``<file>.json``, the same contract as every other
artifact, so the C++ side reads preprocessing and labels from there.

What :func:`export_aoti` does:

1. refuses an existing output (unless ``force``) before any work;
2. ``torch.export.export`` with a dynamic ``batch`` Dim (example batch 2: batch 1 would
   specialise), or a fixed batch;
3. ``torch._inductor.aoti_compile_and_package`` into a temporary ``.pt2`` in the target folder
   (minutes on a small CPU: inductor generates and compiles C++ for every kernel);
4. checks the compiled package against the eager model on one random batch (the same relative
   logit tolerance as the ONNX verification), then renames it into place and writes the sidecar.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsx.core.progress import Phase
from clsx.core.errors import GateFailedError
from clsx.core.files import describe_exception
from clsx.core.files import OutputSet, check_writable, refuse_existing, sha256_bytes, temp_folder
from clsx.core.metadata import dumps, make_document, sidecar_path
from clsx.exporter.artifacts import ExportError

if TYPE_CHECKING:
    from clsx.exporter.onnx_export import BatchPlan
    from clsx.zoo import LoadedModel

log = logging.getLogger(__name__)

AOTI_SUFFIX = ".pt2"
#: max |logit difference| / max |eager logit| accepted for the compiled package (FP32 both sides)
AOTI_VS_TORCH_REL = 1e-3
DEFAULT_MAX_BATCH = 64


@dataclass(frozen=True)
class AotiResult:
    """What :func:`export_aoti` wrote: the package, its sidecar, the document and figures."""

    path: Path
    sidecar: Path
    metadata: dict[str, Any]
    seconds: float
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sidecar": str(self.sidecar), "sha256": self.sha256,
                "seconds": round(self.seconds, 3), "verification": self.metadata.get("verification")}


def aoti_path_for(onnx_path: Path) -> Path:
    """``model.onnx`` -> ``model.pt2`` in the same folder."""
    name = onnx_path.name
    stem = name[: -len(".onnx")] if name.lower().endswith(".onnx") else name
    return onnx_path.with_name(stem + AOTI_SUFFIX)


def preflight_aoti(path: Path, *, force: bool) -> None:
    """Fail before any work when the package (or its sidecar) cannot be written."""
    if path.suffix != AOTI_SUFFIX:
        raise ExportError(f"cannot write {path}: an AOTInductor package must end in {AOTI_SUFFIX}")
    check_writable(path, error=ExportError)
    refuse_existing([path, sidecar_path(path)], force=force)


def export_aoti(
    loaded: "LoadedModel",
    out: str | Path,
    *,
    batch: str | int = "dynamic",
    max_batch: int | None = None,
    force: bool = False,
    verify: bool = True,
) -> AotiResult:
    """Compile ``loaded`` with AOTInductor (CPU) into ``out`` (a ``.pt2`` file) plus ``out.json``.

    ``batch``: ``"dynamic"`` (default; batches 1..``max_batch``, default 64) or a fixed size.
    Raises :class:`ExportError` when torch cannot export or compile the model, and
    :class:`GateFailedError` when the compiled package does not reproduce the eager logits.
    """
    from clsx.exporter.onnx_export import parse_batch

    t0 = time.perf_counter()
    path = Path(out).expanduser()
    plan = parse_batch(batch, max_batch)
    preflight_aoti(path, force=force)
    spec = loaded.spec
    module = loaded.module.eval()
    program = _export_program(module, spec.preprocess.input_size, plan)
    t = time.perf_counter()
    # compiled under its final file name (the package's inner folder is named after it), in a
    # temporary folder beside the target, then renamed into place
    with temp_folder(path) as tmp_dir:
        tmp = tmp_dir / path.name
        with Phase(f"compiling {spec.ref} with AOTInductor", log):
            _compile(program, tmp, package_metadata(spec.preprocess.input_size, spec.num_classes))
        compile_s = time.perf_counter() - t
        log.info("AOTInductor compiled %s in %.1f s", spec.ref, compile_s)
        verification = _verify(module, tmp, spec.preprocess.input_size, plan) if verify else None
        if verification is not None and not verification["passed"]:
            raise GateFailedError(
                f"the AOTInductor package of {spec.ref} does not reproduce torch: max |Δlogit| "
                f"{verification['max_abs_diff']:.3g} > {verification['tolerance']:.3g}"
            )
        doc = _document(spec, plan, compile_s, verification)
        data = tmp.read_bytes()
        side = sidecar_path(path)
        with OutputSet([path, side], force=force) as outputs:
            os.replace(tmp, outputs.temp(path))
            outputs.write_text(side, dumps(doc))
    sha = sha256_bytes(data)
    log.info("wrote %s (%.1f MB, sha256 %s)", path, len(data) / 1e6, sha[:12])
    return AotiResult(path=path, sidecar=side, metadata=doc, seconds=time.perf_counter() - t0, sha256=sha)


def _export_program(module: Any, input_size: tuple[int, int, int], plan: "BatchPlan") -> Any:
    import torch

    example = torch.zeros(plan.example, *input_size)
    shapes = None
    if plan.dynamic:
        shapes = ({0: torch.export.Dim("batch", min=1, max=plan.max or DEFAULT_MAX_BATCH)},)
    try:
        with torch.no_grad():
            return torch.export.export(module, (example,), dynamic_shapes=shapes)
    except Exception as exc:
        raise ExportError(f"torch.export cannot capture the model for AOTInductor: {describe_exception(exc)}") from None


def package_metadata(input_size: tuple[int, int, int], num_classes: int) -> dict[str, str]:
    """What the package itself records about its I/O (AOTIModelPackageLoader::get_metadata in C++).

    The compiled code does not check input shapes by default: a sidecar that promised another
    input size would make it read out of bounds. The C++ library compares these with the sidecar
    before running anything.
    """
    return {"clsx_input_size": "x".join(str(d) for d in input_size), "clsx_num_classes": str(num_classes)}


def _compile(program: Any, target: Path, metadata: dict[str, str]) -> None:
    import torch._inductor

    try:
        with torch.no_grad():
            torch._inductor.aoti_compile_and_package(program, package_path=str(target),
                                                     inductor_configs={"aot_inductor.metadata": metadata})
    except Exception as exc:
        raise ExportError(f"AOTInductor cannot compile the model: {describe_exception(exc)}") from None


def _verify(module: Any, package: Path, input_size: tuple[int, int, int], plan: "BatchPlan") -> dict[str, Any]:
    """Eager vs compiled logits on one seeded random batch (3 when dynamic: not the example size)."""
    import torch
    import torch._inductor

    n = 3 if plan.dynamic else int(plan.size)  # type: ignore[arg-type]
    if plan.dynamic and plan.max is not None:
        n = min(n, plan.max)
    x = torch.randn(n, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = module(x)
        got = torch._inductor.aoti_load_package(str(package))(x)
    diff = float((got - ref).abs().max())
    tol = AOTI_VS_TORCH_REL * max(float(ref.abs().max()), 1e-12)
    return {"reference": "torch", "candidate": "aoti cpu", "batch": n, "max_abs_diff": diff,
            "tolerance": tol, "passed": diff <= tol}


def _document(spec: Any, plan: Any, compile_s: float, verification: dict[str, Any] | None) -> dict[str, Any]:
    import torch

    from clsx.exporter.onnx_export import io_entries

    inputs, outputs = io_entries(spec, plan)
    if plan.dynamic:
        inputs[0]["max_batch"] = plan.max or DEFAULT_MAX_BATCH
    return make_document(
        spec, artifact="aoti", precision="fp32", inputs=inputs, outputs=outputs,
        producer={"exporter": "aoti", "torch": torch.__version__, "device": "cpu", "batch": plan.to_dict(),
                  "compile_seconds": round(compile_s, 1)},
        verification=verification,
    )
