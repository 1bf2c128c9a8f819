"""Compile an ONNX graph into a TensorRT engine (``clsx build``), with standard TensorRT or TensorRT-RTX.

Precision is already in the graph (FP32, FP16 with FP32 I/O, or INT8 Q/DQ): the network is created
strongly typed, so the builder compiles exactly what the graph says. The plan is written raw, so
trtexec and C++ TensorRT load it unchanged; everything clsx knows about it goes to the sidecar
``<plan>.json``: the ONNX's clsx document with ``artifact="tensorrt"``, ``parent_sha256`` = the ONNX
file's sha256, and a ``tensorrt`` section (flavour, version, compute capabilities, profile shapes,
compatibility settings, optimization level, timing cache).

The ONNX file is checked before TensorRT sees it (metadata, one input, batch axis, external weights
in place, output writable), so the usual mistakes are one clear line, not a build that fails late.
Plan and sidecar are written through temporary files and renamed into place together: a failed build
leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from clsx.core.progress import Phase
from clsx import __version__
from clsx.core.artifact import load_checked_onnx
from clsx.core.errors import ClsxError
from clsx.core.files import OutputSet, check_writable, output_path, refuse_existing, sha256_bytes, sha256_file
from clsx.core.metadata import dumps, is_partial, read_metadata_or_graph, sidecar_path
from clsx.runtimes import trt_lib
from clsx.runtimes.trt_lib import EngineBuildError

log = logging.getLogger(__name__)

# Weak typing (BuilderFlag.FP16/INT8) is deprecated from TensorRT 10.12 on and gone in 11.
LEGACY_WEAK_TYPING_BEFORE = (10, 12)


@dataclass(frozen=True)
class EngineOptions:
    """How :func:`build_engine` builds (``clsx build``'s flags).

    ``target``: ``auto`` (what is installed; says which), ``tensorrt`` or ``rtx``. A dynamic batch axis
    gets one optimization profile ``min_batch <= opt_batch <= max_batch`` (``None``: 1, 8 and 32); a
    graph with a fixed batch N gets the fixed profile N/N/N (other values given are refused). ``compute_capabilities``
    (``sm86``, ``8.9``, ``current`` ...) selects TensorRT-RTX targets; standard TensorRT builds for its
    GPU, or for Ampere and newer with ``hardware_compat="ampere+"``. ``legacy_weak_typing`` is the old
    BuilderFlag.FP16/INT8 path, offered only on standard TensorRT older than 10.12. The values are
    checked when a build starts (one clear :class:`ClsxError` line), not on construction.
    """

    target: str = "auto"
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace_gb: float | None = None
    timing_cache: Path | str | None = None
    opt_level: int | None = None
    hardware_compat: str = "none"
    version_compatible: bool = False
    compute_capabilities: tuple[str, ...] | None = None  # any iterable is kept as a tuple
    legacy_weak_typing: bool = False
    input_size: tuple[int, int, int] | None = None  # (C, H, W) for a graph whose height/width are dynamic

    def __post_init__(self) -> None:
        if self.compute_capabilities is not None and not isinstance(self.compute_capabilities, tuple):
            object.__setattr__(self, "compute_capabilities", tuple(self.compute_capabilities))

    def replace(self, **fields: Any) -> "EngineOptions":
        """A copy with ``fields`` changed; a name that is not an option is a :class:`TypeError`."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown engine option(s): {', '.join(unknown)} "
                            f"(EngineOptions has {', '.join(f.name for f in dataclasses.fields(self))})")
        return dataclasses.replace(self, **fields) if fields else self


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_engine` wrote."""

    path: Path  # the raw plan
    sidecar: Path  # <plan>.json
    metadata: dict[str, Any]  # the sidecar's document
    seconds: float  # wall time of the TensorRT build itself
    flavour: str  # "tensorrt" | "tensorrt_rtx"


@dataclass(frozen=True)
class _GraphInput:
    name: str
    shape: tuple[int | str | None, ...]  # int = fixed, str = named dynamic axis, None = unknown


@dataclass(frozen=True)
class _Request:
    """A build request that passed every check: the graph, the outputs and the TensorRT to build with."""

    onnx_path: Path
    out: Path
    options: EngineOptions
    cache_path: Path | None
    doc: dict[str, Any]  # the ONNX's clsx document
    graph_input: _GraphInput
    has_qdq: bool
    profile: dict[str, tuple[int, ...]]
    flavour: str
    trt: ModuleType
    version: str
    cc_targets: list[str]
    cc_default: bool  # the builder's default targets (none were asked for)


@dataclass(frozen=True)
class _Built:
    """The serialized plan and what the build did; ``builder`` and ``config`` stay alive (as in one
    function) until the timing cache is saved."""

    plan: memoryview
    seconds: float
    builder: Any
    config: Any
    strongly_typed: bool
    network: dict[str, Any]
    opt_level: int | None
    cache_info: dict[str, Any] | None


def build_engine(
    onnx_path: Path | str,
    out: Path | str | None = None,
    options: EngineOptions | None = None,
    *,
    force: bool = False,
    **fields: Any,
) -> BuildResult:
    """Build ``onnx_path`` into a TensorRT plan at ``out`` (default: beside it, ``.plan``) plus its sidecar.

    ``options`` (default :class:`EngineOptions()`) says how; keyword ``fields`` are
    :class:`EngineOptions` fields that override it, e.g. ``build_engine(p, target="rtx", max_batch=8)``
    (an unknown name is a :class:`TypeError`). Steps: check the request and plan the outputs
    (:func:`_check_request`), parse the graph, configure the builder and its profile, build and
    serialize (:func:`_build`), write plan and sidecar together (:func:`_publish_build`).
    """
    opts = (options if options is not None else EngineOptions()).replace(**fields)
    req = _check_request(Path(onnx_path), out, opts, force)
    log.info(
        "building %s with %s %s: batch %d/%d/%d (min/opt/max), targets %s",
        req.onnx_path.name, req.flavour, req.version, *(req.profile[k][0] for k in ("min", "opt", "max")),
        ", ".join(req.cc_targets) or "-",
    )
    with Phase("building the TensorRT engine", log):
        built = _build(req)
    return _publish_build(req, built, _sidecar_document(req, built), force=force)


# ---------------------------------------------------------------------------------------------
# Checks before TensorRT sees anything


def _check_request(onnx_path: Path, out: Path | str | None, opts: EngineOptions, force: bool) -> _Request:
    """Every check a build makes before TensorRT parses anything, in order: the options, the graph,
    the outputs, then the TensorRT flavour and its targets."""
    graph_input, has_qdq = _inspect_onnx(onnx_path)
    fixed = graph_input.shape[0] if graph_input.shape and isinstance(graph_input.shape[0], int) and graph_input.shape[0] > 0 else None
    batches = _profile_batches(opts, fixed)
    _check_build_options(*batches, opts.workspace_gb, opts.opt_level, opts.hardware_compat)
    doc = _check_document(onnx_path)
    profile = _batch_profile(onnx_path, _with_image_size(onnx_path, graph_input, opts.input_size), *batches)
    target = _output_path(onnx_path, out, force)
    cache_path = Path(opts.timing_cache) if opts.timing_cache is not None else None
    check_writable(target, what="the output")
    if cache_path is not None:
        check_writable(cache_path, what="the timing cache")
    flavour = trt_lib.flavour_for_target(opts.target)
    trt = trt_lib.import_tensorrt(flavour)
    version = str(trt.__version__)
    cc_targets, cc_default = _compute_capability_targets(flavour, opts.compute_capabilities, opts.hardware_compat)
    _check_flavour_options(flavour, version, opts)
    return _Request(onnx_path=onnx_path, out=target, options=opts, cache_path=cache_path, doc=doc,
                    graph_input=graph_input, has_qdq=has_qdq, profile=profile, flavour=flavour, trt=trt,
                    version=version, cc_targets=cc_targets, cc_default=cc_default)


def _profile_batches(opts: EngineOptions, fixed: int | None) -> tuple[int, int, int]:
    """min/opt/max batch: as given, else 1/8/32 for a dynamic batch and N/N/N for a fixed batch N."""
    given = (opts.min_batch, opts.opt_batch, opts.max_batch)
    if fixed is not None and all(b is None or b == fixed for b in given):
        return fixed, fixed, fixed
    lo = opts.min_batch if opts.min_batch is not None else 1
    hi = opts.max_batch if opts.max_batch is not None else max(32, lo)
    opt = opts.opt_batch if opts.opt_batch is not None else min(max(8, lo), hi)
    return lo, opt, hi


def _check_document(onnx_path: Path) -> dict[str, Any]:
    """The graph's clsx document, when it describes a graph TensorRT can compile. A graph clsx did not
    make builds too (as trtexec builds it): its sidecar records what the graph says (inputs, outputs,
    class count), its preprocessing stays null until flags or ``clsx annotate`` supply it."""
    doc = read_metadata_or_graph(onnx_path)
    if is_partial(doc):
        log.info("%s has no clsx metadata: building from the graph alone (the plan's sidecar records its inputs, "
                 "outputs and class count; pass --preset or the preprocessing flags when running it)", onnx_path.name)
    if doc.get("artifact") not in (None, "onnx"):
        raise ClsxError(f"{onnx_path}: metadata says this is a {doc.get('artifact')} artifact, not an ONNX graph")
    if (doc.get("calibration") or {}).get("target") == "cpu":
        raise ClsxError(f"{onnx_path} is an INT8 graph laid out for ONNX Runtime's CPU kernels (asymmetric, int32 bias), which "
                        "TensorRT rejects; calibrate the FP32 graph again with --for tensorrt (the default)")
    return doc


def _check_flavour_options(flavour: str, version: str, opts: EngineOptions) -> None:
    """Options that only one TensorRT flavour (or version) offers."""
    if flavour == "tensorrt_rtx":
        if opts.hardware_compat != "none":
            raise ClsxError(
                "--hardware-compat is a standard TensorRT option; TensorRT-RTX engines are portable across the "
                "compute capabilities they target: use --compute-capability instead"
            )
        if opts.version_compatible:
            raise ClsxError(
                "--version-compatible is a standard TensorRT option: TensorRT-RTX engines only run on the "
                "TensorRT-RTX release that built them"
            )
    if opts.legacy_weak_typing:
        _check_legacy_allowed(flavour, version)


def _check_build_options(min_batch: int, opt_batch: int, max_batch: int, workspace_gb: float | None,
                         opt_level: int | None, hardware_compat: str) -> None:
    if min_batch < 1:
        raise ClsxError(f"--min-batch must be at least 1, got {min_batch}")
    if not min_batch <= opt_batch <= max_batch:
        raise ClsxError(
            f"batch profile needs min <= opt <= max, got --min-batch {min_batch} --opt-batch {opt_batch} --max-batch {max_batch}"
        )
    if workspace_gb is not None and workspace_gb <= 0:
        raise ClsxError(f"--workspace must be a positive number of GB, got {workspace_gb}")
    if opt_level is not None and not 0 <= opt_level <= 5:
        raise ClsxError(f"--opt-level must be 0 to 5, got {opt_level}")
    if hardware_compat not in trt_lib.HARDWARE_COMPAT:
        raise ClsxError(f"--hardware-compat must be one of {', '.join(trt_lib.HARDWARE_COMPAT)}, got {hardware_compat!r}")


def _inspect_onnx(path: Path) -> tuple[_GraphInput, bool]:
    """The graph's one real input and whether it holds Q/DQ nodes; checks external weights are in place
    (inside the graph's folder, present, long enough: :func:`clsx.core.artifact.load_checked_onnx`)."""
    if not path.exists():
        raise ClsxError(f"{path}: no such ONNX file")
    model, _ = load_checked_onnx(path)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ClsxError(f"{path}: a classifier graph has one image input; this one has {len(inputs)} ({names})")
    dims: list[int | str | None] = []
    for d in inputs[0].type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(str(d.dim_param))
        else:
            dims.append(None)
    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return _GraphInput(inputs[0].name, tuple(dims)), has_qdq


def _with_image_size(path: Path, graph_input: _GraphInput, input_size: tuple[int, int, int] | None) -> _GraphInput:
    """The graph's input with its dynamic channel/height/width axes fixed to ``input_size`` (``--input-size``),
    in the graph's own layout (NCHW or NHWC); as it is when none is given."""
    shape = graph_input.shape
    if input_size is None or len(shape) != 4:
        return graph_input
    from clsx.core.graph_io import layout_of
    from clsx.core.spec import InputFormat

    layout = layout_of(tuple(d if d is not None else "?" for d in shape), where=str(path), name=graph_input.name)
    want = InputFormat(layout=layout).batch_shape(1, input_size)[1:]
    if any(isinstance(d, int) and d != w for d, w in zip(shape[1:], want)):
        raise ClsxError(f"{path}: --input-size {'x'.join(map(str, input_size))} does not fit input {graph_input.name!r} "
                        f"of shape {_fmt(shape)}")
    return _GraphInput(graph_input.name, (shape[0], *want))


def _batch_profile(path: Path, graph_input: _GraphInput, min_batch: int, opt_batch: int,
                   max_batch: int) -> dict[str, tuple[int, ...]]:
    """min/opt/max shapes for the batch axis; every other axis must be fixed."""
    shape = graph_input.shape
    if not shape:
        raise ClsxError(f"{path}: input {graph_input.name!r} has no shape; re-export it with clsx export")
    rest = shape[1:]
    if any(not isinstance(d, int) or d < 1 for d in rest):
        raise ClsxError(
            f"{path}: only the batch axis may be dynamic, input {graph_input.name!r} has shape {_fmt(shape)}; "
            "pass --input-size to fix the image size of the engine, or re-export with a fixed input size"
        )
    batch = shape[0]
    if isinstance(batch, int) and batch > 0 and (min_batch, opt_batch, max_batch) != (batch, batch, batch):
        raise ClsxError(
            f"{path}: input {graph_input.name!r} has a fixed batch of {batch} (shape {_fmt(shape)}) but the profile "
            f"asks for batch {min_batch}..{max_batch}; re-export with a dynamic batch axis, or leave out --min/--opt/--max-batch (or give "
            f"--min-batch {batch} --opt-batch {batch} --max-batch {batch})"
        )
    return {k: (b, *rest) for k, b in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))}  # type: ignore[misc]


def _output_path(onnx_path: Path, out: Path | str | None, force: bool) -> Path:
    if out is None:
        target = onnx_path.with_suffix(".plan")
    else:  # a file, or a folder (existing, or a string ending in / to create) for MODEL.plan
        target = output_path(out, onnx_path.with_suffix(".plan").name)
    refuse_existing([target, sidecar_path(target)], force=force)
    return target


def _compute_capability_targets(flavour: str, requested: Iterable[str] | None,
                                 hardware_compat: str) -> tuple[list[str], bool]:
    """(targets, used the builder's default) -- what the sidecar records and the runtime checks."""
    wanted = [c for c in (requested or []) if str(c).strip()]
    if flavour == "tensorrt_rtx":
        if not wanted:
            return list(trt_lib.RTX_DEFAULT_COMPUTE_CAPABILITIES), True
        out = []
        for raw in wanted:
            if str(raw).strip().lower() == "current":
                cc = trt_lib.gpu_compute_capability()
                if cc is None:
                    raise ClsxError("--compute-capability current needs a CUDA GPU, and torch.cuda sees none")
            else:
                cc = trt_lib.normalize_compute_capability(raw)
            if cc not in trt_lib.RTX_COMPUTE_CAPABILITIES:
                raise ClsxError(
                    f"TensorRT-RTX cannot target {cc}; it builds for {', '.join(trt_lib.RTX_COMPUTE_CAPABILITIES)}"
                    + (" (Hopper GPUs need standard TensorRT: --target tensorrt)" if cc.startswith("sm9") else "")
                )
            if cc not in out:
                out.append(cc)
        return out, False
    # standard TensorRT builds on, and for, the GPU it runs on
    if wanted:
        raise ClsxError(
            "--compute-capability selects TensorRT-RTX targets; standard TensorRT builds for the GPU it runs on "
            "(use --hardware-compat ampere+ for an engine that runs on Ampere and newer)"
        )
    cc = trt_lib.gpu_compute_capability()
    if cc is None:
        raise ClsxError(
            "standard TensorRT needs a CUDA GPU to build engines and torch.cuda sees none; "
            "use --target rtx (TensorRT-RTX builds without a GPU)"
        )
    return [cc], False


def _check_legacy_allowed(flavour: str, version: str) -> None:
    if flavour != "tensorrt" or trt_lib.version_tuple(version)[:2] >= LEGACY_WEAK_TYPING_BEFORE:
        raise ClsxError(
            f"--legacy-weak-typing is only offered on standard TensorRT older than 10.12 (this is {flavour} {version}); "
            "precision comes from the graph: export with --fp16 or --int8"
        )


# ---------------------------------------------------------------------------------------------
# TensorRT calls


def _create_network(trt: ModuleType, builder: Any, legacy_weak_typing: bool) -> tuple[Any, bool]:
    """A strongly typed network (TensorRT 11 and TensorRT-RTX are strongly typed whether asked or not)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if legacy_weak_typing or flag is None:
        return builder.create_network(0), not legacy_weak_typing
    return builder.create_network(1 << int(flag)), True


def _parse(trt: ModuleType, network: Any, trt_logger: Any, onnx_path: Path, flavour: str, version: str) -> None:
    parser = trt.OnnxParser(network, trt_logger)
    # the path as given (made absolute), not resolved: its folder is the one load_checked_onnx checked
    if parser.parse_from_file(os.path.abspath(onnx_path)):
        return
    problems = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        desc = " ".join(str(err.desc()).split())
        op = str(err.node_operator())
        if "Plugin not found" in desc or "No importer registered" in desc:
            desc = f"unsupported operator {op} (no {flavour} importer or plugin for it)"
        node = str(err.node_name()) or (f"#{err.node()}" if err.node() >= 0 else "")
        where = f"node {node} ({op}): " if node or op else ""
        problems.append(where + desc)
    if not problems:
        problems = _tidy(trt_logger.errors)[-3:] or ["no reason given"]
    raise EngineBuildError(f"{onnx_path.name}: {flavour} {version} cannot parse the graph: " + "; ".join(problems))


def _summarize_network(trt: ModuleType, network: Any) -> dict[str, Any]:
    """Layer count, Q/DQ layers and the data types the parsed network computes in: what the graph's
    precision became inside TensorRT (strongly typed, so FP16/INT8 show here or nowhere)."""
    qdq = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    n_qdq = 0
    dtypes: set[str] = set()
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in qdq:
            n_qdq += 1
        for j in range(layer.num_outputs):
            dtypes.add(str(layer.get_output(j).dtype).rsplit(".", 1)[-1].lower())
    return {"layers": network.num_layers, "qdq_layers": n_qdq, "dtypes": sorted(dtypes)}


def _configure(trt: ModuleType, builder: Any, config: Any, network: Any, *, profile: dict[str, tuple[int, ...]],
               workspace_gb: float | None, opt_level: int | None, hardware_compat: str, version_compatible: bool,
               cc_targets: list[str] | None, flavour: str, legacy_weak_typing: bool, has_qdq: bool) -> None:
    if network.num_inputs != 1:
        raise EngineBuildError(f"{flavour} sees {network.num_inputs} inputs in the parsed graph; expected one")
    name = network.get_input(0).name
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(name, profile["min"], profile["opt"], profile["max"])
    config.add_optimization_profile(opt_profile)
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _workspace_bytes(workspace_gb))
    if opt_level is not None:
        config.builder_optimization_level = int(opt_level)
    if hardware_compat != "none":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, trt_lib.HARDWARE_COMPAT[hardware_compat])
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if cc_targets:
        config.num_compute_capabilities = len(cc_targets)
        for i, cc in enumerate(cc_targets):
            enum = getattr(trt.ComputeCapability, cc.upper(), None)
            if enum is None:
                raise ClsxError(f"{flavour} {trt.__version__} does not know compute capability {cc}; upgrade it")
            if not config.set_compute_capability(enum, i):
                raise EngineBuildError(f"{flavour} refused compute capability {cc}")
    if legacy_weak_typing:
        log.warning("legacy weak typing: BuilderFlag.FP16%s lets TensorRT pick precisions itself (deprecated path)",
                    " + INT8" if has_qdq else "")
        config.set_flag(trt.BuilderFlag.FP16)
        if has_qdq:
            config.set_flag(trt.BuilderFlag.INT8)


def _load_timing_cache(trt: ModuleType, config: Any, path: Path | None, flavour: str) -> dict[str, Any] | None:
    """Standard TensorRT: reuse and grow a timing cache file. TensorRT-RTX has none that matters."""
    if path is None:
        return None
    if flavour == "tensorrt_rtx":
        # TensorRT-RTX's timing cache has no effect on the engine, is a no-op since 1.2, and setting one
        # makes the ahead-of-time build query for a GPU (no CPU-only build): leave it alone.
        log.warning("TensorRT-RTX has no timing cache (its builder does not time kernels); --timing-cache %s ignored", path)
        return {"path": str(path), "supported": False}
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("timing cache %s was made for another device or TensorRT version; starting a fresh one", path)
        blob = b""
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    log.info("timing cache %s: %s", path, f"loaded {len(blob)} bytes" if blob else "new")
    return {"path": str(path), "supported": True, "loaded_bytes": len(blob)}


def _save_timing_cache(config: Any, path: Path) -> int:
    data = memoryview(config.get_timing_cache().serialize())
    _publish({path: data}, force=True)  # a timing cache is meant to be refreshed
    return data.nbytes


def _optimization_level(config: Any, requested: int | None) -> int | None:
    try:
        return int(config.builder_optimization_level)
    except Exception:  # not every flavour exposes the getter
        return requested


# ---------------------------------------------------------------------------------------------
# Build, sidecar, publish


def _build(req: _Request) -> _Built:
    """Parse the graph, configure the builder (profile, settings, timing cache), build and serialize."""
    trt, opts = req.trt, req.options
    trt_logger = trt_lib.make_logger(trt)
    builder = trt.Builder(trt_logger)
    network, strongly_typed = _create_network(trt, builder, opts.legacy_weak_typing)
    _parse(trt, network, trt_logger, req.onnx_path, req.flavour, req.version)
    network_summary = _summarize_network(trt, network)
    config = builder.create_builder_config()
    try:
        _configure(trt, builder, config, network, profile=req.profile, workspace_gb=opts.workspace_gb,
                   opt_level=opts.opt_level, hardware_compat=opts.hardware_compat,
                   version_compatible=opts.version_compatible,
                   cc_targets=None if req.cc_default else req.cc_targets, flavour=req.flavour,
                   legacy_weak_typing=opts.legacy_weak_typing, has_qdq=req.has_qdq)
    except (ValueError, TypeError, RuntimeError) as exc:  # TensorRT's bindings raise these for bad settings
        raise EngineBuildError(f"{req.onnx_path.name}: {req.flavour} rejected the build settings: {exc}") from None
    cache_info = _load_timing_cache(trt, config, req.cache_path, req.flavour)

    started = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if plan is None:
        reason = "; ".join(_tidy(trt_logger.errors)[-3:]) or "no reason given"
        raise EngineBuildError(f"{req.onnx_path.name}: {req.flavour} {req.version} could not build an engine: {reason}")
    return _Built(plan=memoryview(plan), seconds=seconds, builder=builder, config=config, strongly_typed=strongly_typed,
                  network=network_summary, opt_level=_optimization_level(config, opts.opt_level),
                  cache_info=cache_info)


def _sidecar_document(req: _Request, built: _Built) -> dict[str, Any]:
    """The ONNX's document, re-labelled as the plan's, with the ``tensorrt`` section."""
    opts = req.options
    doc = dict(req.doc)
    if opts.input_size is not None and doc.get("inputs"):  # the engine's image size, fixed by --input-size
        doc["inputs"] = [{**doc["inputs"][0], "shape": [doc["inputs"][0]["shape"][0], *req.profile["max"][1:]]},
                         *doc["inputs"][1:]]
    doc.update(
        clsx_version=__version__,
        artifact="tensorrt",
        parent_sha256=sha256_file(req.onnx_path),
        tensorrt={
            "flavour": req.flavour,
            "version": req.version,
            "compute_capabilities": req.cc_targets,
            "compute_capabilities_default": req.cc_default,
            "hardware_compat": opts.hardware_compat,
            "version_compatible": opts.version_compatible,
            "strongly_typed": built.strongly_typed,
            "legacy_weak_typing": opts.legacy_weak_typing,
            "precision": req.doc.get("precision"),
            "network": built.network,
            "profile": {"input": req.graph_input.name, **{k: list(v) for k, v in req.profile.items()}},
            "opt_level": built.opt_level,
            "workspace_bytes": _workspace_bytes(opts.workspace_gb),
            "timing_cache": built.cache_info,
            "onnx_file": req.onnx_path.name,
            "plan_bytes": built.plan.nbytes,
            "plan_sha256": sha256_bytes(built.plan),
            "build_seconds": round(built.seconds, 3),
            "built_on": {"gpu": trt_lib.gpu_name(), "compute_capability": trt_lib.gpu_compute_capability()},
        },
    )
    return doc


def _publish_build(req: _Request, built: _Built, doc: dict[str, Any], *, force: bool) -> BuildResult:
    """Plan and sidecar together (all or none), then the grown timing cache."""
    side = sidecar_path(req.out)
    _publish({req.out: built.plan, side: dumps(doc).encode()}, force=force)
    cache_info = built.cache_info
    if req.cache_path is not None and cache_info is not None and cache_info.get("supported"):
        cache_info["saved_bytes"] = _save_timing_cache(built.config, req.cache_path)
    log.info("wrote %s (%.1f MB, built in %.1f s) and %s", req.out, built.plan.nbytes / 1e6, built.seconds, side.name)
    return BuildResult(path=req.out, sidecar=side, metadata=doc, seconds=built.seconds, flavour=req.flavour)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _publish(files: dict[Path, Any], *, force: bool) -> None:
    """Publish every file together (:class:`~clsx.core.files.OutputSet`): all or none."""
    with OutputSet(list(files), force=force) as out:
        for target, data in files.items():
            out.write_bytes(target, data)


def _workspace_bytes(workspace_gb: float | None) -> int | None:
    return None if workspace_gb is None else int(workspace_gb * (1 << 30))


def _tidy(messages: list[str]) -> list[str]:
    """TensorRT errors without the ``Error Code N: Component (`` noise, deduplicated, in order."""
    seen: list[str] = []
    for m in messages:
        text = m.split("buildSerializedNetwork: ", 1)[-1]
        if text not in seen:
            seen.append(text)
    return seen


def _fmt(shape: tuple[Any, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
