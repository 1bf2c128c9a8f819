"""torch -> ONNX: torch's dynamo exporter first, the TorchScript exporter when dynamo fails.

What :func:`export_onnx` does, in order (nothing is written before step 5):

1. checks the request: opset, batch mode, output paths (writable, not existing unless ``force``);
   then, on a worker thread, preprocesses the verification photos and runs the torch reference
   while the exporter's modules import on the main thread (tracing waits for it: torch.fx and
   torch.export patch global state a concurrent forward pass must not see);
2. folds BatchNorm into the preceding Conv in torch (eval mode; exact up to float rounding). The
   ONNX optimizer would fold them anyway, but tracing a graph without them halves the time the
   dynamo exporter spends re-tracing for decompositions (resnet50: about 8 s -> 5 s on 2 cores). A
   Conv or BatchNorm used at more than one place is left alone;
3. exports with ``torch.onnx.export(dynamo=True)`` and a ``batch`` Dim (example batch 2: a batch of 1
   would specialise the axis), onnxscript's optimizer on; on failure it logs why and falls back to
   the TorchScript exporter (``dynamo=False``, ``dynamic_axes``). Opsets below 18 go straight to
   TorchScript: dynamo writes opset 18+ and its down-conversion rarely succeeds;
4. names the tensors ``input`` / ``logits`` with the batch axis ``batch``, checks the graph with
   ``onnx.checker`` and verifies it on ONNX Runtime against torch (:mod:`clsx.exporter.verify`);
5. writes one self-contained file (all weights inside) with the clsx metadata document in
   ``metadata_props`` and the same document in the sidecar ``<file>.json``. A graph of 2 GiB or
   more cannot be one protobuf: its weights go to ONE data file ``<file>.data`` beside it (ONNX
   external data; :mod:`clsx.exporter.artifacts`), the metadata stays in the graph file;
6. with ``fp16=True``, converts that graph (:mod:`clsx.exporter.fp16`) and verifies it against the
   FP32 graph on the same inputs.

A graph that fails verification is written as ``<stem>.FAILED.onnx`` and :class:`GateFailedError`
(exit status 3) names it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsx.core.progress import Phase
from clsx.core.errors import ClsxError, GateFailedError, SpecError
from clsx.core.files import check_writable, describe_exception
from clsx.core.pixel_input import add_pixel_input
from clsx.core.spec import FLOAT_NCHW, InputFormat
from clsx.exporter.artifacts import (
    ExportError,
    ExportResult,
    StagedOnnx,
    commit,
    failed_path_for,
    fp16_path_for,
    refuse_existing,
    remove_quietly,
    resolve_output,
    stage,
    staging_folder,
    strip_clsx_metadata,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

    import onnx
    from torch import nn

    from clsx.exporter.verify import Probe, Verification
    from clsx.core.spec import ModelSpec
    from clsx.zoo import LoadedModel

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "input", "logits", "batch"
DEFAULT_OPSET = 20  # torch's default; TensorRT 10/11 and TensorRT-RTX parse it
MIN_OPSET = 7  # the TorchScript exporter's oldest
MAX_OPSET = 23  # the newest both of torch's exporters write
DYNAMO_MIN_OPSET = 18  # dynamo's own translation table; older opsets need the TorchScript exporter
EXAMPLE_BATCH = 2  # a Dim traced with batch 1 specialises to 1


@dataclass(frozen=True)
class BatchPlan:
    """The batch axis of the exported graph: dynamic (optionally with a maximum) or a fixed size."""

    dynamic: bool
    size: int | None = None  # fixed size when not dynamic
    max: int | None = None  # largest batch a dynamic graph promises to serve (engine profiles)

    @property
    def example(self) -> int:
        return EXAMPLE_BATCH if self.dynamic else int(self.size)  # type: ignore[arg-type]

    @property
    def dim(self) -> str | int:
        return BATCH_DIM if self.dynamic else int(self.size)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {"dynamic": self.dynamic, "size": self.size, "max": self.max}


def parse_batch(batch: str | int = "dynamic", max_batch: int | None = None) -> BatchPlan:
    """``"dynamic"`` (default) or a fixed size N >= 1; ``max_batch`` only with a dynamic batch."""
    if isinstance(batch, str) and batch.strip().lower() == "dynamic":
        if max_batch is not None and max_batch < EXAMPLE_BATCH:
            raise SpecError(f"--max-batch must be at least {EXAMPLE_BATCH} for a dynamic batch; for batch 1 use --batch 1")
        return BatchPlan(dynamic=True, max=max_batch)
    try:
        size = int(batch)
    except (TypeError, ValueError):
        raise SpecError(f"--batch must be 'dynamic' or a positive integer; got {batch!r}") from None
    if size < 1:
        raise SpecError(f"--batch must be 'dynamic' or a positive integer; got {batch!r}")
    if max_batch is not None:
        raise SpecError("--max-batch applies to a dynamic batch only; drop it or use --batch dynamic")
    return BatchPlan(dynamic=False, size=size)


def check_opset(opset: int | None) -> int:
    """The opset to write; one the exporters cannot produce is a one-line error."""
    if opset is None:
        return DEFAULT_OPSET
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(
            f"opset {opset} cannot be produced: torch's ONNX exporters write opsets {MIN_OPSET}-{MAX_OPSET} "
            f"(dynamo {DYNAMO_MIN_OPSET}-{MAX_OPSET}, TorchScript {MIN_OPSET}-{MAX_OPSET}); default {DEFAULT_OPSET}"
        )
    return int(opset)


def plan_outputs(name: str, out: str | Path | None, *, fp16: bool, force: bool) -> tuple[Path, Path | None]:
    """The FP32 (and FP16) output paths for model ``name``; fails fast when they cannot be written."""
    fp32 = resolve_output(out, name)
    fp16_path = fp16_path_for(fp32) if fp16 else None
    check_writable(fp32, error=ExportError)
    refuse_existing([p for p in (fp32, fp16_path) if p is not None], force=force)
    return fp32, fp16_path


def preflight(name: str, out: str | Path | None = None, *, opset: int | None = None, batch: str | int = "dynamic",
              max_batch: int | None = None, fp16: bool = False, force: bool = False) -> None:
    """Every check :func:`export_onnx` makes before exporting, without building the model (the CLI
    calls it first, so a bad request fails in a fraction of a second)."""
    check_opset(opset)
    parse_batch(batch, max_batch)
    plan_outputs(name, out, fp16=fp16, force=force)


# ---------------------------------------------------------------------------------------------
# torch -> ModelProto


class _ExporterFailed(Exception):
    """One exporter could not produce the graph (the other may)."""


def fold_batchnorm(module: "nn.Module") -> "nn.Module | None":
    """``module`` traced by torch.fx with each eval-mode BatchNorm folded into the Conv before it, or
    None when nothing folds (no Conv->BatchNorm pair, training mode, or a model torch.fx cannot trace).

    The user's module is not modified: the traced copy shares its other layers and gets new, folded
    convolutions. A Conv or BatchNorm called from more than one place, or a Conv whose output is also
    used elsewhere, is left alone.
    """
    import collections

    import torch.fx
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))
    if module.training or not any(type(m) in {bn for _, bn in pairs} for m in module.modules()):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = torch.fx.symbolic_trace(module)
    except Exception as exc:  # symbolic tracing fails on data-dependent Python control flow
        log.debug("BatchNorm folding skipped (torch.fx cannot trace the model: %s)", describe_exception(exc))
        return None
    modules = dict(gm.named_modules())
    calls = collections.Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    folded = 0
    for node in list(gm.graph.nodes):
        conv_node = node.args[0] if node.op == "call_module" and node.args else None
        if not isinstance(conv_node, torch.fx.Node) or conv_node.op != "call_module":
            continue
        conv, bn = modules.get(conv_node.target), modules.get(node.target)
        if (type(conv), type(bn)) not in pairs or len(conv_node.users) > 1 or calls[conv_node.target] > 1 or calls[node.target] > 1:
            continue
        if bn.training or not bn.track_running_stats or bn.running_mean is None:
            continue
        parent, _, name = conv_node.target.rpartition(".")
        setattr(modules[parent] if parent else gm, name, fuse_conv_bn_eval(conv, bn))
        node.replace_all_uses_with(conv_node)
        gm.graph.erase_node(node)
        folded += 1
    if not folded:
        return None
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    log.debug("folded %d BatchNorm layers into convolutions before export", folded)
    return gm.eval()


def _dynamo(module: "nn.Module", example: Any, plan: BatchPlan, opset: int, workdir: Path) -> "onnx.ModelProto":
    """The dynamo exporter's graph. One of 2 GiB or more never becomes a whole ModelProto (protobuf
    cannot hold it): torch saves it to ``workdir`` as ``model.onnx`` + ``model.onnx.data`` and the
    weightless graph is returned, its tensors pointing at that data file."""
    import onnx
    import torch

    from clsx.exporter import artifacts

    dynamic_shapes = None
    if plan.dynamic:
        kw = {"max": plan.max} if plan.max else {}
        dynamic_shapes = ({0: torch.export.Dim(BATCH_DIM, min=1, **kw)},)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, (example,), None, dynamo=True, verbose=False, report=False, verify=False, optimize=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes, opset_version=opset,
            )
    except Exception as exc:
        raise _ExporterFailed(describe_exception(exc)) from exc
    weights = sum(int(v.const_value.nbytes) for v in program.model.graph.initializers.values() if v.const_value is not None)
    if weights < artifacts.SINGLE_FILE_LIMIT:
        return program.model_proto
    log.info("the graph's weights take %.1f MB: saving them as external data", weights / 1e6)
    graph = workdir / artifacts.STAGED_GRAPH
    program.save(str(graph), external_data=True)  # writes model.onnx + model.onnx.data
    del program
    return onnx.load(str(graph), load_external_data=False)


def _torchscript(module: "nn.Module", example: Any, plan: BatchPlan, opset: int) -> "onnx.ModelProto":
    import onnx
    import torch

    axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if plan.dynamic else None
    with tempfile.TemporaryDirectory(prefix="clsx-export-") as tmp:
        path = Path(tmp) / "model.onnx"  # a folder of its own: large models get external data files
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, (example,), str(path), dynamo=False, verbose=False, do_constant_folding=True,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset,
                )
        except Exception as exc:
            raise _ExporterFailed(describe_exception(exc)) from exc
        # external data files of a large model are read back into the proto; stage() writes them out again as one file
        return onnx.load(str(path))


def _opset_of(model: "onnx.ModelProto") -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def to_onnx(loaded: "LoadedModel", *, opset: int, plan: BatchPlan, workdir: Path,
            ) -> tuple["onnx.ModelProto", str, dict[str, Any]]:
    """Export ``loaded`` to a ModelProto (weightless, its weights in ``workdir/model.onnx.data``, when
    the dynamo exporter's graph is 2 GiB or more). Returns (model, exporter used, notes)."""
    import torch

    module = loaded.module.eval()
    example = torch.zeros(plan.example, *loaded.spec.preprocess.input_size)
    notes: dict[str, Any] = {}
    failures: list[str] = []

    if opset >= DYNAMO_MIN_OPSET:
        t = time.perf_counter()
        folded = fold_batchnorm(module)
        candidates = [(folded, True), (module, False)] if folded is not None else [(module, False)]
        for mod, is_folded in candidates:
            try:
                model = _dynamo(mod, example, plan, opset, workdir)
            except _ExporterFailed as exc:
                failures.append(f"dynamo{' (BatchNorm folded)' if is_folded else ''}: {exc}")
                log.debug("dynamo exporter failed%s: %s", " on the BatchNorm-folded model" if is_folded else "", exc)
                continue
            if _opset_of(model) != opset:
                failures.append(f"dynamo: wrote opset {_opset_of(model)} instead of {opset}")
                break
            notes.update(batchnorm_folded=is_folded, export_seconds=round(time.perf_counter() - t, 3))
            return model, "dynamo", notes
        log.warning("dynamo exporter failed (%s); falling back to the TorchScript exporter", failures[-1])
    else:
        failures.append(f"dynamo: writes opset {DYNAMO_MIN_OPSET}+ only")
        log.info("opset %d is older than the dynamo exporter writes (%d+): using the TorchScript exporter", opset, DYNAMO_MIN_OPSET)

    dynamo_failure = failures[-1]
    t = time.perf_counter()
    try:
        model = _torchscript(module, example, plan, opset)
    except _ExporterFailed as exc:
        failures.append(f"torchscript: {exc}")
        raise ExportError(f"cannot export {loaded.spec.ref} to ONNX opset {opset}: " + "; ".join(failures)) from None
    if _opset_of(model) != opset:
        raise ExportError(f"cannot export {loaded.spec.ref} to ONNX opset {opset}: the TorchScript exporter wrote opset {_opset_of(model)}")
    notes.update(batchnorm_folded=False, export_seconds=round(time.perf_counter() - t, 3), fallback_reason=dynamo_failure)
    return model, "torchscript", notes


def finalize_io(model: "onnx.ModelProto", spec: "ModelSpec", plan: BatchPlan) -> None:
    """One input ``input`` [batch, C, H, W] and one output ``logits`` [batch, classes], batch axis named."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ExportError(f"the exported graph has {len(inputs)} inputs; clsx exports models taking one image batch")
    if len(graph.output) != 1:
        raise ExportError(
            f"the model returns {len(graph.output)} outputs; clsx exports classifiers returning one [batch, classes] logits tensor"
        )
    _rename_value(graph, inputs[0].name, INPUT_NAME)
    _rename_value(graph, graph.output[0].name, OUTPUT_NAME)
    out_dims = graph.output[0].type.tensor_type.shape.dim
    if len(out_dims) != 2:
        raise ExportError(f"the model's output has rank {len(out_dims)}; clsx exports classifiers returning [batch, classes] logits")
    _set_dims(inputs[0], [plan.dim, *spec.preprocess.input_size])
    _set_dims(graph.output[0], [plan.dim, spec.num_classes])
    if not graph.name or graph.name in ("main_graph", "torch_jit"):
        graph.name = spec.name


def _rename_value(graph: Any, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def _set_dims(value_info: Any, dims: list[str | int]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = int(d)


def _import_exporter_modules(opset: int) -> None:
    """Import what the chosen exporter imports on first use, while the torch reference runs on the
    other core (saves about a second of a cold ``clsx export``). Best effort: failures surface later."""
    import importlib

    names = ["onnxruntime"]
    if opset >= DYNAMO_MIN_OPSET:
        names += ["onnxscript", "onnxscript.function_libs.torch_lib.ops", "torch.onnx._internal.exporter._core"]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # pragma: no cover - the export reports the real problem
            pass


# ---------------------------------------------------------------------------------------------
# metadata


def io_entries(spec: "ModelSpec", plan: BatchPlan, fmt: InputFormat = FLOAT_NCHW) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``inputs`` / ``outputs`` sections of the metadata document (FP32 logits at every precision;
    the input float32 NCHW, or uint8 pixels with their ``layout`` for ``--input uint8``)."""
    entry: dict[str, Any] = {"name": INPUT_NAME, "shape": list(fmt.batch_shape(plan.dim, spec.preprocess.input_size)),  # type: ignore[arg-type]
                             "dtype": fmt.dtype}
    if fmt != FLOAT_NCHW:
        entry["layout"] = fmt.layout
    inputs = [entry]
    outputs = [{"name": OUTPUT_NAME, "shape": [plan.dim, spec.num_classes], "dtype": "float32"}]
    return inputs, outputs


def producer_info(exporter: str, opset: int, plan: BatchPlan, notes: dict[str, Any]) -> dict[str, Any]:
    import onnx
    import torch

    info: dict[str, Any] = {
        "exporter": exporter,
        "opset": opset,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "batch": plan.to_dict(),
        "batchnorm_folded": bool(notes.get("batchnorm_folded")),
    }
    if exporter == "dynamo":
        import onnxscript

        info["onnxscript"] = onnxscript.__version__
    if notes.get("fallback_reason"):
        info["fallback_reason"] = notes["fallback_reason"]
    return info


# ---------------------------------------------------------------------------------------------
# the public entry point


def _start_reference(loaded: "LoadedModel", plan: BatchPlan, *, verify: bool, fp16: bool, photos: int | None,
                     fmt: InputFormat) -> "Future | None":
    """Prefetch the verification photos and start torch's reference logits in the background (when
    verifying); the FP16 conversion needs the photos too."""
    if not (verify or fp16):
        return None
    from clsx.exporter.fp16 import RANGE_PHOTOS
    from clsx.exporter.verify import prefetch_photos, torch_reference_in_background

    pre = loaded.spec.preprocess
    prefetch_photos(pre, photos if verify else RANGE_PHOTOS)
    if not verify:
        return None
    return torch_reference_in_background(loaded.module, pre, static_batch=None if plan.dynamic else plan.size,
                                         max_batch=plan.max, photos=photos, fmt=fmt)


def export_onnx(
    loaded: "LoadedModel",
    out: str | Path | None = None,
    *,
    opset: int | None = None,
    batch: str | int = "dynamic",
    max_batch: int | None = None,
    fp16: bool = False,
    verify: bool = True,
    force: bool = False,
    verify_photos: int | None = None,
    input_format: InputFormat = FLOAT_NCHW,
) -> ExportResult:
    """Export a built model to ONNX (see the module docstring for the steps).

    ``out``: file or folder (default ``<model name>.onnx`` in the current directory); ``opset``:
    7-23 (default 20); ``batch``: ``"dynamic"`` or a fixed size; ``max_batch``: the largest batch a
    dynamic graph should serve (recorded for engine builds); ``fp16``: also write
    ``<stem>.fp16.onnx`` (FP16 inside, FP32 I/O); ``verify``: check on ONNX Runtime against torch
    (``verify_photos``: how many sample photos; default all 17 for real weights, 8 for random
    weights); ``force``: overwrite existing outputs; ``input_format``: uint8 (NHWC or NCHW) makes the
    graphs take pixels and normalize inside (:mod:`clsx.core.pixel_input`), verified against torch on
    the same photos.

    Raises :class:`ExportError`/:class:`~clsx.core.errors.OutputExistsError`/:class:`SpecError` (exit 1)
    for requests that cannot be served and :class:`GateFailedError` (exit 3) when verification fails.
    """
    t0 = time.perf_counter()
    spec = loaded.spec
    opset_n = check_opset(opset)
    plan = parse_batch(batch, max_batch)
    fp32_path, fp16_path = plan_outputs(spec.name, out, fp16=fp16, force=force)
    if verify_photos is None:
        from clsx.exporter.verify import default_photos

        verify_photos = default_photos(real_weights=spec.weights != "random")
    reference = _start_reference(loaded, plan, verify=verify, fp16=fp16, photos=verify_photos, fmt=input_format)
    _import_exporter_modules(opset_n)
    if reference is not None:
        concurrent.futures.wait([reference])  # finish before tracing (see torch_reference_in_background)

    with staging_folder(fp32_path) as workdir:
        with Phase(f"exporting {spec.ref} to ONNX", log):
            model, exporter, notes = to_onnx(loaded, opset=opset_n, plan=plan, workdir=workdir)
        finalize_io(model, spec, plan)
        add_pixel_input(model, spec.preprocess, input_format, INPUT_NAME)
        strip_clsx_metadata(model)
        staged = stage(model, workdir)  # once: the checker, ONNX Runtime and the file all use it
        log.info("exported %s with the %s exporter (opset %d, %s) in %.1f s", spec.ref, exporter, opset_n,
                 "dynamic batch" if plan.dynamic else f"batch fixed at {plan.size}", time.perf_counter() - t0)
        written, _, probe, fp32_logits = _check_and_write(staged, loaded, reference, fp32_path, verify=verify, force=force,
                                                          exporter=exporter, opset=opset_n, plan=plan, notes=notes,
                                                          fmt=input_format)
    doc = written.doc
    fp32_result = ExportResult(
        path=fp32_path, fp32_path=fp32_path, metadata=doc, exporter=exporter,
        verification=doc["verification"], seconds=time.perf_counter() - t0, sha256=written.sha256,
    )
    if not fp16:
        return fp32_result

    from clsx.exporter.fp16 import fp16_from_fp32

    assert fp16_path is not None
    if staged.external:  # its weights went to the data file: read them back for the conversion
        import onnx

        model = onnx.load(str(fp32_path))
    res16 = fp16_from_fp32(model, written.sha256, doc, fp16_path, fp32_source=written.data or str(fp32_path),
                           verify=verify, probe=probe, fp32_logits=fp32_logits, verify_photos=verify_photos, t0=t0, force=force)
    return ExportResult(
        path=res16.path, fp32_path=fp32_path, metadata=res16.metadata, exporter=exporter,
        verification=res16.verification, seconds=time.perf_counter() - t0, fp16_path=res16.path,
        sha256=res16.sha256, fp32_verification=doc["verification"],
    )


def _check_and_write(staged: StagedOnnx, loaded: "LoadedModel", reference: "Future | None", fp32_path: Path, *,
                     verify: bool, force: bool, exporter: str, opset: int, plan: BatchPlan, notes: dict[str, Any],
                     fmt: InputFormat = FLOAT_NCHW) -> tuple[Any, "Verification | None", "Probe | None", dict | None]:
    """onnx.checker, ONNX Runtime vs torch, then the file under its final (or FAILED) name.
    Returns (what was written, verification, probe, ONNX logits)."""
    from clsx.exporter.verify import Verification, check_graph
    from clsx.core.metadata import make_document

    spec = loaded.spec
    verification: Verification | None = None
    probe: Probe | None = None
    fp32_logits: dict | None = None
    problem = check_graph(staged.source)
    if problem:
        verification = Verification(reference="torch", candidate="onnx fp32", reasons=[f"onnx.checker: {problem}"])
        log.error("verification: %s", verification.reasons[0])
    elif verify:
        verification, probe, fp32_logits = _verify_fp32(staged.source, loaded, reference)
    else:
        # the argument, not a CLI flag: the demo and API callers never typed --no-verify
        log.info("verification skipped (verify=False): onnx.checker passed, ONNX Runtime not run")
    inputs, outputs = io_entries(spec, plan, fmt)
    doc = make_document(
        spec, artifact="onnx", precision="fp32", inputs=inputs, outputs=outputs,
        producer=producer_info(exporter, opset, plan, notes),
        verification=verification.to_dict() if verification else None, **staged.sections(),
    )
    if verification is not None and not verification.passed:
        failed = failed_path_for(fp32_path)
        commit(staged, failed, doc, force=True)  # a diagnostic copy: the last one counts
        raise GateFailedError(
            f"verification failed for {spec.ref} ({'; '.join(verification.reasons)}); "
            f"the graph was kept as {failed}{' (+ its .data file)' if staged.external else ''} for inspection"
        )
    written = commit(staged, fp32_path, doc, force=force)
    remove_quietly(failed_path_for(fp32_path))
    log.info("wrote %s (%s, sha256 %s)", fp32_path, staged.describe(fp32_path), written.sha256[:12])
    return written, verification, probe, fp32_logits


def _verify_fp32(model: "bytes | str", loaded: "LoadedModel", reference: "Future[tuple[Probe, dict]]",
                 ) -> tuple["Verification", "Probe", dict | None]:
    """ONNX Runtime vs torch on photos and random input. Returns (verification, probe, ONNX logits)."""
    from clsx.exporter.verify import (
        FP32_VS_TORCH, OrtRunner, Verification, compare, torch_fp32_variants, torch_fp64_logits,
    )

    spec = loaded.spec
    t = time.perf_counter()
    try:
        probe, ref = reference.result()
    except ClsxError:
        raise
    except Exception as exc:
        raise ExportError(f"the torch model itself fails on the verification photos: {describe_exception(exc)}") from None
    try:
        runner = OrtRunner(model)
        got = runner.logits(probe)
    except Exception as exc:  # ORT refuses or crashes on the graph
        v = Verification(reference="torch", candidate="onnx fp32", reasons=[f"onnxruntime cannot run the graph: {describe_exception(exc)}"])
        log.error("verification: %s", v.reasons[0])
        return v, probe, None
    kw = dict(tolerance=FP32_VS_TORCH, real_weights=spec.weights != "random", reference="torch",
              candidate=f"onnx fp32 on {runner.describe()}", photo_names=probe.photo_names)
    v = compare(ref, got, **kw)
    if v.missed_sets:  # is the tolerance attainable on those inputs at all? ask float64 (verify's docstring)
        sets = list(dict.fromkeys([*v.missed_sets, *(["photos"] if "photos" in ref else [])]))
        exact = torch_fp64_logits(loaded.module, probe, sets)
        if exact:
            variants = torch_fp32_variants(loaded.module, probe, v.missed_sets)
            v = compare(ref, got, exact=exact, variants=variants, **kw)
            for name, d in v.fp64_check.items():
                log.info("%s: torch fp32 is %.3g from the float64 result (FP32 noise over %d evaluations %.3g), the ONNX graph %.3g",
                         name, d["reference_vs_fp64"], d["fp32_evaluations"], d["fp32_noise"], d["candidate_vs_fp64"])
    (log.info if v.passed else log.error)("verify %s (%.1f s)", v.summary(), time.perf_counter() - t)
    return v, probe, got
