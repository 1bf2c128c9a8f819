"""The ``clsx`` command line. Each command is a thin shim over a library function.

stdout carries data only (CSV, JSON, tables); logs, warnings and progress go to stderr.
Exit status: 0 ok, 1 user error (one line on stderr), 2 usage error, 3 a verification/parity gate
failed. ``--debug`` (or CLSX_DEBUG=1) shows tracebacks for user errors too. Heavy libraries are
imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from clsx import __version__
from clsx.core import interrupts
from clsx.core.errors import ClsxError, terminal_safe
from clsx.core.files import ReaderGone

log = logging.getLogger("clsx")
_DEBUG = os.environ.get("CLSX_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


class _ClsxGroup(TyperGroup):
    """Turns ClsxError into one line on stderr and its exit status; anything else is a bug. The
    ``clsx`` logger's setup (see _setup_logging) lasts for the command only: a program that calls the
    CLI in-process (tests, CliRunner) gets its own logging back afterwards."""

    def invoke(self, ctx: Any) -> Any:
        logger = logging.getLogger("clsx")
        saved = logger.handlers[:], logger.level, logger.propagate
        quieted = {name: logging.getLogger(name).level for name in _CHATTY_DEPENDENCIES}
        shown = warnings.showwarning
        try:
            return super().invoke(ctx)
        except ClsxError as exc:
            if _DEBUG:
                raise
            if not isinstance(exc, ReaderGone):  # `clsx infer ... | head`: stop quietly
                typer.echo(f"clsx: error: {terminal_safe(str(exc))}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP (see main): temporaries are gone by now
            _interrupted(exc.signum if isinstance(exc, interrupts.Terminated) else signal.SIGINT)
        except Exception:
            # The signal's exception can land inside a library's lock handling (a thread pool shutting
            # down: "release unlocked lock") and come out as another error; it is still the interrupt.
            if interrupts.SIGNALLED:
                _interrupted(interrupts.SIGNALLED[-1])
            raise
        finally:
            warnings.showwarning = shown
            logger.handlers[:], logger.propagate = saved[0], saved[2]
            logger.setLevel(saved[1])  # (setLevel, not .level =: it clears the loggers' level cache)
            for name, level in quieted.items():
                logging.getLogger(name).setLevel(level)

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))  # the group's own flags: -q, --debug, --help


def _interrupted(signum: int) -> None:
    name = signal.Signals(signum).name
    typer.echo(f"clsx: interrupted ({name}); nothing was published", err=True)
    raise typer.Exit(128 + signum) from None


def _untyped_flags(params: list[Any]) -> list[Any]:
    """Flags (``--force``, ``--help``, ``-v`` counted) take no value, so their help shows no type:
    some typer versions print ``<bool>``/``<int>`` beside them, as if ``--force true`` were asked for."""
    for p in params:
        if (getattr(p, "is_flag", False) or getattr(p, "count", False)) and getattr(p, "metavar", "") is None:
            p.metavar = ""
    return params


class _ClsxCommand(TyperCommand):
    """Every clsx command (see _ClsxTyper): help without a type beside flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


class _ClsxTyper(typer.Typer):
    """``@app.command(...)`` makes a :class:`_ClsxCommand` unless told otherwise."""

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _ClsxCommand, **kwargs)


app = _ClsxTyper(
    cls=_ClsxGroup,
    name="clsx",
    help="Export, calibrate, compile and run image classifiers: torch -> ONNX (FP32/FP16/INT8) -> TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _StderrFormatter(logging.Formatter):
    """``clsx: [level: ]message``, one line whatever the message holds (see terminal_safe)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = terminal_safe(record.getMessage())
        if record.levelno >= logging.WARNING:
            return f"clsx: {record.levelname.lower()}: {msg}"
        return f"clsx: {msg}"


#: Libraries whose Python loggers report progress at INFO (reaching stderr once something configures the root logger).
_CHATTY_DEPENDENCIES = ("onnxruntime",)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter())
    root = logging.getLogger("clsx")
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The CLI owns how clsx records are shown, whatever a dependency does to the root logger (ONNX
    # Runtime's matmul_nbits_quantizer calls logging.basicConfig when imported): they stop here.
    root.propagate = False
    # ...and a dependency's own INFO chatter through such a root handler ("Performing symbolic shape
    # inference...") shows only with --verbose; its warnings always do.
    for name in _CHATTY_DEPENDENCIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    warnings.showwarning = _show_warning


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """A library's Python warning (Pillow on an odd EXIF tag, ...) as one ``clsx: warning:`` line that
    names the library, instead of a path, a line number and a source line on stderr."""
    text = next((ln.strip() for ln in str(message).splitlines() if ln.strip()), category.__name__)
    logging.getLogger("clsx").warning("%s (%s from %s)", text, category.__name__, _package_of(filename))


def _package_of(filename: str) -> str:
    """The top-level package (or module) a source file belongs to: its first part below the longest
    ``sys.path`` entry that holds it."""
    path = os.path.abspath(filename)
    roots = [os.path.abspath(p or ".") for p in sys.path]
    root = max((r for r in roots if path.startswith(r.rstrip(os.sep) + os.sep)), key=len, default=None)
    if root is None:
        return Path(filename).stem
    return Path(os.path.relpath(path, root)).parts[0].removesuffix(".py")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clsx {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for user errors too.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    global _DEBUG
    _DEBUG = _DEBUG or debug
    _setup_logging(verbose, quiet)


# ---------------------------------------------------------------------------------------------
# Shared options (defined once, used by every command that builds a model)

#: ``-o`` values stay strings (a Path drops the trailing ``/`` that means "into this folder, created")
PATH_METAVAR = "<path>"

ModelArg = Annotated[str, typer.Argument(help="Model: resnet50, tv:NAME, timm:NAME[.TAG], pm:NAME or package.module:function.", show_default=False)]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", "-w", help="Checkpoint (.pth/.pt/.safetensors), loaded without executing pickled code.")]
PretrainedOpt = Annotated[bool, typer.Option("--pretrained", help="Use the source library's own pretrained weights (downloads).")]
RandomWeightsOpt = Annotated[bool, typer.Option("--random-weights", help="Random (untrained) weights are intended: no warning (without --weights/--pretrained a model has them, and clsx warns).")]
NumClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", min=1, help="Classifier outputs (custom heads).")]
LabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="Class names: a text file (one per line) or a JSON list.")]
InputSizeOpt = Annotated[Optional[str], typer.Option("--input-size", help="S (square), HxW, or CxHxW with C 1 or 3 (e.g. 224, 240x320, 3x32x32); S and HxW sides are at least 8.")]
MeanOpt = Annotated[Optional[str], typer.Option("--mean", help="Per-channel mean, comma-separated (in units of the input range).")]
StdOpt = Annotated[Optional[str], typer.Option("--std", help="Per-channel std, comma-separated.")]
InterpOpt = Annotated[Optional[str], typer.Option("--interpolation", help="Resize filter: bilinear, bicubic, nearest, lanczos, box, hamming.")]
CropPctOpt = Annotated[Optional[float], typer.Option("--crop-pct", help="Center-crop fraction: the shorter side is resized to size/crop_pct.")]
ResizeSizeOpt = Annotated[Optional[int], typer.Option("--resize-size", min=1, help="Shorter side before the center crop, in pixels (instead of --crop-pct).")]
ChannelOrderOpt = Annotated[Optional[str], typer.Option("--channel-order", help="RGB or BGR.")]
InputRangeOpt = Annotated[Optional[float], typer.Option("--input-range", help="Pixel scale before mean/std: 1 ([0,1]) or 255 ([0,255]).")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per inference call.")]
DevicesOpt = Annotated[Optional[str], typer.Option("--device", "-d", help="auto, cpu, cuda[:N], or tensorrt[:N] (ONNX Runtime's TensorRT provider), for every artifact.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Decode/preprocess threads (default: one per core).")]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="For an ONNX graph clsx did not make: borrow a known model's eval preprocessing and labels (e.g. timm:tf_efficientnet_lite0, tv:resnet50); preprocessing flags beat it.")]


FastDecodeOpt = Annotated[bool, typer.Option("--fast-decode", help="Decode large JPEGs at 1/2-1/8 scale (DCT scaling; ~5x faster on camera-size photos, not bit-exact: measured 98.3 % top-1 agreement). Recorded in the metadata by export.")]


def preprocess_overrides(input_size: str | None, mean: str | None, std: str | None, interpolation: str | None,
                         crop_pct: float | None, resize_size: int | None = None, channel_order: str | None = None,
                         input_range: float | None = None, fast_decode: bool = False):
    """CLI preprocessing flags -> PreprocessOverrides (the highest-precedence layer)."""
    from clsx.core.spec import PreprocessOverrides, parse_floats, parse_input_size

    return PreprocessOverrides(
        input_size=parse_input_size(input_size) if input_size else None,
        mean=parse_floats(mean, what="--mean") if mean else None,
        std=parse_floats(std, what="--std") if std else None,
        interpolation=interpolation.lower() if interpolation else None,
        crop_pct=crop_pct,
        resize_size=resize_size,
        channel_order=channel_order.upper() if channel_order else None,
        input_range=input_range,
        fast_decode=True if fast_decode else None,
    )


def graph_options(preset: str | None, labels: Path | None, *flags: Any) -> dict[str, Any]:
    """``--preset``, ``--labels`` and the preprocessing flags as :func:`clsx.open` options (those given)."""
    overrides = preprocess_overrides(*flags)
    opts = {"preset": preset, "labels": labels, "preprocess": overrides if overrides.as_dict() else None}
    return {k: v for k, v in opts.items() if v is not None}


#: The options every command that reads images through a graph takes for an ONNX graph clsx did not
#: make (see :func:`graph_flags`): parameter name -> its typer annotation, in help order.
GRAPH_FLAGS: dict[str, Any] = {
    "preset": PresetOpt, "labels": LabelsOpt, "input_size": InputSizeOpt, "mean": MeanOpt, "std": StdOpt,
    "interpolation": InterpOpt, "crop_pct": CropPctOpt, "resize_size": ResizeSizeOpt,
    "channel_order": ChannelOrderOpt, "input_range": InputRangeOpt,
}
#: The options of a command that builds a zoo model by name (see :func:`model_flags`).
MODEL_FLAGS: dict[str, Any] = {
    "weights": WeightsOpt, "pretrained": PretrainedOpt, "random_weights": RandomWeightsOpt, "num_classes": NumClassesOpt,
}
_FLAG_DEFAULTS = {"pretrained": False, "random_weights": False, "fast_decode": False}


def _option_group(flags: dict[str, Any], param: str, combine: Any) -> Any:
    """A decorator giving a command the options ``flags`` (name -> typer annotation), declared once: the
    command declares ``param`` instead and receives ``combine(**given)``."""
    import functools
    import inspect
    import typing

    def wrap(func: Any) -> Any:
        hints = typing.get_type_hints(func, include_extras=True)  # (this module's annotations are strings)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(func).parameters.values() if p.name != param]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=_FLAG_DEFAULTS.get(name))
                 for name, ann in flags.items()]

        @functools.wraps(func)
        def command(*args: Any, **kw: Any) -> Any:
            given = {name: kw.pop(name, _FLAG_DEFAULTS.get(name)) for name in flags}
            return func(*args, **{param: combine(**given)}, **kw)

        command.__signature__ = inspect.Signature(own + added, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in own + added}
        return command

    return wrap


def graph_flags(*, fast_decode: bool = False) -> Any:
    """``--preset``, ``--labels`` and the preprocessing flags (and ``--fast-decode``) for a command, which
    receives them as ``graph_opts``: :func:`graph_options` of those given."""
    flags = {**GRAPH_FLAGS, **({"fast_decode": FastDecodeOpt} if fast_decode else {})}
    return _option_group(flags, "graph_opts", lambda **given: graph_options(*given.values()))


def model_flags() -> Any:
    """``--weights``, ``--pretrained``, ``--random-weights`` and ``--num-classes`` for a command, which
    receives them as ``model_opts`` (a dict with all four)."""
    return _option_group(MODEL_FLAGS, "model_opts", lambda **given: given)


# ---------------------------------------------------------------------------------------------
# Commands


@app.command("models")
def models_cmd(
    pattern: Annotated[str, typer.Argument(help="Wildcard filter, e.g. 'resnet*' or '*efficientnet*'.")] = "*",
    source: Annotated[Optional[str], typer.Option("--source", "-s", help="Only this source: torchvision (tv), timm or pretrainedmodels (pm).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON list on stdout instead of a table.")] = False,
) -> None:
    """List buildable models by qualified name (tv:NAME, timm:NAME, pm:NAME: a bare NAME picks torchvision, then timm) with their source, default input size and parameter count."""
    from clsx.zoo import list_models

    entries = list_models(pattern, source)
    if as_json:
        typer.echo("[\n" + ",\n".join(json.dumps(e.to_dict()) for e in entries) + "\n]" if entries else "[]")
        return
    if not entries:
        log.warning("no model matches %r", pattern)
        return
    width = max(len(e.qualified) for e in entries)
    swidth = max(len("SOURCE"), *(len(e.source) for e in entries))
    typer.echo(f"{'NAME':<{width}}  {'SOURCE':<{swidth}}  {'INPUT':<11}  PARAMS")
    for e in entries:  # qualified names: resnet18 is in three sources, tv:resnet18 in one
        params = f"{e.params / 1e6:.1f}M" if e.params is not None else "-"
        typer.echo(f"{e.qualified:<{width}}  {e.source:<{swidth}}  {'x'.join(map(str, e.input_size)):<11}  {params}")
    log.info("%d models", len(entries))


@app.command("demo")
def demo_cmd(
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, max=1000, help="Classes per image.")] = 5,
) -> None:
    """Run the main job on built-in material: a real-weights model on real sample photos, top-k CSV on stdout."""
    from clsx.tools.demo import run_demo

    run_demo(sys.stdout, topk=topk)


@app.command("calib")
@graph_flags()
def calib_cmd(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX graph: clsx metadata inside gives its preprocessing; any other graph takes --preset or the preprocessing flags.", show_default=False)],
    images: Annotated[Path, typer.Argument(help="Folder of calibration images (searched recursively).", show_default=False)],
    out: Annotated[Optional[str], typer.Option("--output", "-o", metavar=PATH_METAVAR, help="Output file, or a folder (DIR/: created if missing) for MODEL.int8.onnx (default: beside MODEL).")] = None,
    method: Annotated[str, typer.Option("--method", help="minmax (fastest), entropy or percentile.")] = "minmax",
    for_: Annotated[str, typer.Option("--for", help="Q/DQ layout: tensorrt (TensorRT explicit quantization; ONNX Runtime runs it too) or cpu (ONNX Runtime's fused CPU kernels, ~2-4x FP32 speed; TensorRT rejects it).")] = "tensorrt",
    reduce_range: Annotated[bool, typer.Option("--reduce-range", help="7-bit weights (with --for cpu): avoids the saturation of ONNX Runtime's U8S8 kernels on AVX2-only x86 CPUs (no AVX-512 VNNI).")] = False,
    no_bias_correction: Annotated[bool, typer.Option("--no-bias-correction", help="Do not correct float biases for the mean shift of INT8 weight rounding.")] = False,
    num: Annotated[int, typer.Option("--num", min=1, help="Calibration images to sample.")] = 512,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Calibration batch size.")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the image sample and evaluation split.")] = 0,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Calibration cache: reused when it exists (skips calibration), written otherwise.")] = None,
    eval_dir: Annotated[Optional[Path], typer.Option("--eval-dir", help="Held-out evaluation images (default: a disjoint split of IMAGES).")] = None,
    eval_num: Annotated[int, typer.Option("--eval-num", min=1, help="Evaluation images at most.")] = 64,
    min_top1: Annotated[Optional[float], typer.Option("--min-top1", help="Accuracy gate on the 95% Wilson lower bound of INT8-vs-FP32 top-1 agreement on the held-out images: keep sensitive layers in float until the bound reaches this (exit 3 if never). n/(n+3.84) is the best bound n images give: 0.9 needs >= 35.")] = None,
    max_float_layers: Annotated[Optional[int], typer.Option("--max-float-layers", min=1, help="Limit of layers the gate may keep in float (default: a quarter).")] = None,
    keep_float: Annotated[str, typer.Option("--keep-float", help="Weighted layers kept in float on purpose, as common TensorRT practice: last (the classifier writing the logits; the default), first (the stem convolution reading the image), first,last, or none (quantize every weighted layer).")] = "last",
    keep_sensitive: Annotated[Optional[int], typer.Option("--keep-sensitive", metavar="N", help="Also keep in float the N weighted layers whose INT8 alone lowers the output's SQNR most, ranked on calibration images (at most one in eight quantizable layers; costs one FP32 pass per layer on 32 images); 0 for none. Default: 4 with --for tensorrt, 0 with --for cpu.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the calibration summary as JSON on stdout.")] = False,
    graph_opts: Any = None,
) -> None:
    """INT8-calibrate an FP32 ONNX graph on an image folder: explicit Q/DQ that ONNX Runtime and TensorRT both run."""
    from clsx.calib import CalibOptions, calibrate

    options = CalibOptions(
        method=method, target=for_, reduce_range=reduce_range, bias_correction=not no_bias_correction,
        num=num, batch=batch, seed=seed, cache=cache, eval_dir=eval_dir,
        eval_num=eval_num, min_top1=min_top1, max_float_layers=max_float_layers, keep_float=keep_float,
        keep_sensitive=keep_sensitive,
        **graph_opts,
    )
    res = calibrate(model, images, out, options, force=force)
    if as_json:
        typer.echo(json.dumps({"path": str(res.path), **res.metadata["calibration"]}, indent=2))
    else:
        typer.echo(str(res.path))


# Engine build options, shared by `clsx build` and `clsx export --engine` (fields of EngineOptions).
TargetOpt = Annotated[str, typer.Option("--target", help="auto (what is installed; says which), tensorrt or rtx.")]
MinBatchOpt = Annotated[Optional[int], typer.Option("--min-batch", min=1, help="Smallest batch of the engine's profile (default 1; a fixed-batch graph: its batch).")]
OptBatchOpt = Annotated[Optional[int], typer.Option("--opt-batch", min=1, help="Batch the engine is tuned for (default 8; a fixed-batch graph: its batch).")]
MaxBatchOpt = Annotated[Optional[int], typer.Option("--max-batch", min=1, help="Largest batch of the engine's profile (default 32; a fixed-batch graph: its batch).")]
WorkspaceOpt = Annotated[Optional[float], typer.Option("--workspace", help="Workspace memory-pool limit in GB (default: TensorRT's).")]
TimingCacheOpt = Annotated[Optional[Path], typer.Option("--timing-cache", help="Timing cache file: loaded when it exists, saved after the build (standard TensorRT; TensorRT-RTX has none).")]
OptLevelOpt = Annotated[Optional[int], typer.Option("--opt-level", min=0, max=5, help="Builder optimization level 0-5 (default: TensorRT's, 3).")]
HardwareCompatOpt = Annotated[str, typer.Option("--hardware-compat", help="Standard TensorRT: none, ampere+ or same-cc.")]
VersionCompatOpt = Annotated[bool, typer.Option("--version-compatible", help="Standard TensorRT: plan runs on later TensorRT releases of the same major version.")]
ComputeCapOpt = Annotated[Optional[str], typer.Option("--compute-capability", help="TensorRT-RTX targets, comma-separated: sm75,sm80,sm86,sm89,sm120,sm121 or current (default: sm80+ without Turing).")]
LegacyWeakOpt = Annotated[bool, typer.Option("--legacy-weak-typing", help="LEGACY, standard TensorRT < 10.12 only: BuilderFlag.FP16/INT8 instead of the graph's own precision.")]


def engine_options(target: str, min_batch: int | None, opt_batch: int | None, max_batch: int | None, workspace: float | None,
                   timing_cache: Path | None, opt_level: int | None, hardware_compat: str, version_compatible: bool,
                   compute_capability: str | None, legacy_weak_typing: bool):
    """Engine CLI flags -> clsx.exporter.engine.EngineOptions."""
    from clsx.exporter.engine import EngineOptions

    return EngineOptions(
        target=target, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_gb=workspace,
        timing_cache=timing_cache, opt_level=opt_level, hardware_compat=hardware_compat.lower(),
        version_compatible=version_compatible,
        compute_capabilities=tuple(c for c in compute_capability.split(",") if c.strip()) if compute_capability else None,
        legacy_weak_typing=legacy_weak_typing,
    )


@app.command("build")
def build_cmd(
    onnx_file: Annotated[Path, typer.Argument(help="ONNX graph: clsx's (FP32, FP16 or INT8 Q/DQ) or any other (no preprocessing needed to build).", show_default=False)],
    out: Annotated[Optional[str], typer.Option("--output", "-o", metavar=PATH_METAVAR, help="Plan file, or a folder (DIR/: created if missing) for MODEL.plan (default: beside the ONNX); its sidecar is PLAN.json.")] = None,
    target: TargetOpt = "auto",
    min_batch: MinBatchOpt = None,
    opt_batch: OptBatchOpt = None,
    max_batch: MaxBatchOpt = None,
    workspace: WorkspaceOpt = None,
    timing_cache: TimingCacheOpt = None,
    opt_level: OptLevelOpt = None,
    hardware_compat: HardwareCompatOpt = "none",
    version_compatible: VersionCompatOpt = False,
    compute_capability: ComputeCapOpt = None,
    legacy_weak_typing: LegacyWeakOpt = False,
    input_size: Annotated[Optional[str], typer.Option("--input-size", help="For a graph with dynamic height/width: the image size the engine is built for (S, HxW or CxHxW).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing plan.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecar's tensorrt section as JSON on stdout.")] = False,
) -> None:
    """Compile an ONNX graph into a TensorRT engine (strongly typed: precision comes from the graph); prints the plan path.

    Any valid ONNX graph builds: a dynamic batch gets the profile --min/--opt/--max-batch (default 1/8/32), a fixed batch N the profile N/N/N.
    """
    from clsx.exporter.engine import build_engine

    from clsx.core.spec import parse_input_size

    options = engine_options(target, min_batch, opt_batch, max_batch, workspace, timing_cache, opt_level,
                             hardware_compat, version_compatible, compute_capability, legacy_weak_typing)
    res = build_engine(onnx_file, out, options, force=force, input_size=parse_input_size(input_size) if input_size else None)
    if as_json:
        typer.echo(json.dumps({"path": str(res.path), "sidecar": str(res.sidecar), **res.metadata["tensorrt"]}, indent=2))
    else:
        typer.echo(str(res.path))


@app.command("annotate")
@graph_flags()
def annotate_cmd(
    graph: Annotated[Path, typer.Argument(help="An ONNX graph clsx did not make (timm's onnx_export, torch.onnx.export, a model zoo download ...).", show_default=False)],
    out: Annotated[Optional[str], typer.Option("--output", "-o", metavar=PATH_METAVAR, help="New graph with the document inside, or a folder (DIR/: created if missing) for GRAPH.clsx.onnx (default: beside GRAPH).")] = None,
    sidecar: Annotated[bool, typer.Option("--sidecar", help="Write the document beside GRAPH as GRAPH.json instead (GRAPH stays untouched).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
    graph_opts: Any = None,
) -> None:
    """Write the clsx document (preprocessing, labels, inputs, outputs) into a foreign ONNX graph once, checked against the graph; afterwards every command runs it without flags. Prints the file written."""
    from clsx.tools.annotate import annotate

    res = annotate(graph, out, sidecar=sidecar, force=force, **graph_opts)
    typer.echo(str(res.path))


@app.command("doctor")
def doctor_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of text.")] = False,
) -> None:
    """What this machine can run and build: torch/CUDA and GPUs, ONNX Runtime providers that really load, TensorRT flavours, build and run targets."""
    from clsx.tools.doctor import diagnose, format_report

    report = diagnose()
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@app.command("infer")
@model_flags()
@graph_flags(fast_decode=True)
def infer_cmd(
    artifact: Annotated[str, typer.Argument(help="model.onnx (clsx's, or any graph with --preset/flags), model.plan, or a model name (runs on torch); NAME@BACKEND picks the backend.", show_default=False)],
    paths: Annotated[list[str], typer.Argument(help="Image files and/or folders (searched recursively); with --ray also URIs (s3://, gs://, file://).", show_default=False)],
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="Classes per image.")] = 5,
    batch_size: BatchSizeOpt = 32,
    backend: Annotated[Optional[str], typer.Option("--backend", help="torch, onnxrt or tensorrt (default: from the artifact).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", "-d", help="auto, cpu, cuda[:N], or tensorrt[:N] (ONNX Runtime's TensorRT provider).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or jsonl.")] = "csv",
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar=PATH_METAVAR, help="Write rows to FILE (atomically; missing folders are created) instead of stdout.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output if it exists.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any image could not be classified (rows are still written).")] = False,
    workers: WorkersOpt = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run on Ray Data (the ray extra): read tasks + an actor pool of classifiers; the same rows.")] = False,
    address: Annotated[Optional[str], typer.Option("--address", help="--ray: cluster to join (auto, HOST:PORT, ray://HOST:PORT); default: a local Ray on this machine.")] = None,
    num_workers: Annotated[Optional[int], typer.Option("--num-workers", min=1, help="--ray: classifier actors (default: one per --gpus-per-worker GPUs, else one per 2 CPUs).")] = None,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0.0, help="--ray: GPUs each actor reserves (fractions share a GPU).")] = 0.0,
    graph_opts: Any = None,
    model_opts: Any = None,
) -> None:
    """Classify images: one row per image (path, top-k index/label/probability, error), in sorted path order.

    Rows stream to stdout as batches finish; logs, progress (TTY only) and a summary go to stderr. An ONNX graph clsx did not make takes --preset MODEL or the preprocessing flags (its input size defaults from the graph); the values chosen go to stderr.
    Unreadable images get a row with the reason in the error column; exit status 0 unless --strict.
    """
    open_kw: dict[str, Any] = {"preprocess": None, "labels": None, **graph_opts}
    open_kw.update({k: v for k, v in model_opts.items() if v})
    common = dict(output=output, force=force, strict=strict, topk=topk, fmt=fmt.lower(), batch_size=batch_size, backend=backend, device=device)
    if ray:
        from clsx.scale.ray_infer import run_ray_infer

        run_ray_infer(artifact, list(paths), address=address, num_workers=num_workers, gpus_per_worker=gpus_per_worker, **common, **open_kw)
        return
    if address is not None or num_workers is not None or gpus_per_worker:
        raise typer.BadParameter("--address, --num-workers and --gpus-per-worker apply to --ray runs only")
    from clsx.tools.infer import run_infer

    run_infer(artifact, list(paths), workers=workers, **common, **open_kw)


@app.command("export")
@model_flags()
def export_cmd(
    model: ModelArg,
    labels: LabelsOpt = None,
    out: Annotated[Optional[str], typer.Option("--output", "-o", metavar=PATH_METAVAR, help="Output .onnx file, or a folder (DIR/: created if missing) for <model name>.onnx (default: in the current folder).")] = None,
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset 7-23 (default 20; below 18 uses the TorchScript exporter).")] = None,
    batch: Annotated[str, typer.Option("--batch", help="'dynamic' (default) or a fixed batch size N.")] = "dynamic",
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="Largest batch a dynamic graph should serve (recorded for engine builds).")] = None,
    input_size: InputSizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    interpolation: InterpOpt = None,
    crop_pct: CropPctOpt = None,
    fast_decode: FastDecodeOpt = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write <stem>.fp16.onnx: FP16 inside, FP32 inputs/outputs (what TensorRT compiles).")] = False,
    input_dtype: Annotated[str, typer.Option("--input", help="float32 (default: the host normalizes) or uint8 (the graph takes resized, cropped pixels and normalizes inside).")] = "float32",
    input_layout: Annotated[Optional[str], typer.Option("--input-layout", help="NHWC (default for --input uint8) or NCHW.")] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the ONNX Runtime check against torch (onnx.checker still runs).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout instead of the file paths.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also INT8-calibrate the FP32 graph on --calib-dir (Q/DQ, <stem>.int8.onnx).")] = False,
    calib_dir: Annotated[Optional[Path], typer.Option("--calib-dir", help="Calibration images for --int8.")] = None,
    calib_method: Annotated[str, typer.Option("--calib-method", help="minmax, entropy or percentile (with --int8).")] = "minmax",
    calib_num: Annotated[int, typer.Option("--calib-num", min=1, help="Calibration images to sample (with --int8).")] = 512,
    int8_for: Annotated[str, typer.Option("--int8-for", help="Q/DQ layout of --int8: tensorrt (default) or cpu (ONNX Runtime CPU; see `clsx calib --help`).")] = "tensorrt",
    int8_min_top1: Annotated[Optional[float], typer.Option("--int8-min-top1", help="Accuracy gate of --int8 (see `clsx calib --min-top1`).")] = None,
    engine: Annotated[bool, typer.Option("--engine", help="Also compile a TensorRT engine from the final graph (INT8 > FP16 > FP32).")] = False,
    target: TargetOpt = "auto",
    min_batch: MinBatchOpt = None,
    opt_batch: OptBatchOpt = None,
    engine_max_batch: Annotated[Optional[int], typer.Option("--engine-max-batch", min=1, help="Largest batch of the engine's profile (default 32).")] = None,
    workspace: WorkspaceOpt = None,
    timing_cache: TimingCacheOpt = None,
    opt_level: OptLevelOpt = None,
    hardware_compat: HardwareCompatOpt = "none",
    version_compatible: VersionCompatOpt = False,
    compute_capability: ComputeCapOpt = None,
    legacy_weak_typing: LegacyWeakOpt = False,
    aoti: Annotated[bool, typer.Option("--aoti", help="Also write <stem>.pt2: an AOTInductor package (CPU) with its sidecar, for the C++ library (cpp/).")] = False,
    model_opts: Any = None,
) -> None:
    """Export a model to ONNX (dynamic batch), verified on the spot against torch; metadata inside.

    Prints the written file(s) on stdout (FP32, then FP16); figures and the exporter used go to stderr.
    Exit status 3 when verification fails (the graph is kept as <stem>.FAILED.onnx).
    """
    from clsx.calib import CalibOptions
    from clsx.exporter.chain import ExportOptions, Int8Options, export_chain

    if int8 and calib_dir is None:
        raise typer.BadParameter("--int8 needs --calib-dir IMAGES", param_hint="--calib-dir")
    options = ExportOptions(
        **model_opts, labels=labels,
        preprocess=preprocess_overrides(input_size, mean, std, interpolation, crop_pct, fast_decode=fast_decode),
        out=out, opset=opset, batch=batch, max_batch=max_batch, fp16=fp16, verify=not no_verify,
        input=input_dtype.lower(), input_layout=input_layout.upper() if input_layout else None,
    )
    calib = Int8Options(calib_dir, CalibOptions(method=calib_method, num=calib_num, target=int8_for, min_top1=int8_min_top1)) if int8 else None
    engine_opts = engine_options(target, min_batch, opt_batch, engine_max_batch, workspace, timing_cache, opt_level,
                                 hardware_compat, version_compatible, compute_capability, legacy_weak_typing) if engine else None
    res = export_chain(model, options, int8=calib, engine=engine_opts, aoti=aoti, force=force)
    if as_json:
        typer.echo(json.dumps(res.summary, indent=2, default=str))
        return
    for path in res.paths:
        typer.echo(str(path))


@app.command("info")
def info_cmd(
    artifact: Annotated[Path, typer.Argument(help="An artifact: .onnx (clsx metadata inside, or any ONNX graph) or any file with a <file>.json sidecar.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata document as JSON.")] = False,
) -> None:
    """Print an artifact's clsx metadata: model, preprocessing, precision, I/O, producer, verification.

    For an ONNX graph clsx did not make: what the graph says (input name, dtype, layout, batch axis, output, class count, external data) and what is missing.
    """
    from clsx.tools.info import describe
    from clsx.core.metadata import dumps, read_metadata_or_graph

    doc = read_metadata_or_graph(artifact)
    typer.echo(dumps(doc).rstrip("\n") if as_json else describe(artifact, doc))


@app.command("parity")
@model_flags()
@graph_flags()
def parity_cmd(
    reference: Annotated[str, typer.Argument(help="Reference: model.onnx, model.plan, or a model name (torch); NAME@BACKEND picks the backend.", show_default=False)],
    candidates: Annotated[list[str], typer.Argument(help="Candidates to compare with the reference (same forms).", show_default=False)],
    images: Annotated[list[Path], typer.Option("--images", "-i", help="Image folder or file (repeatable; folders are searched recursively).", show_default=False)],
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="k of the top-k membership and overlap figures.")] = 5,
    min_top1: Annotated[Optional[float], typer.Option("--min-top1", min=0.0, max=1.0, help="Gate: top-1 agreement at least this fraction (exit 3 if missed).")] = None,
    min_top5: Annotated[Optional[float], typer.Option("--min-top5", "--min-topk", min=0.0, max=1.0, help="Gate: the reference's top-1 within the candidate's top-k (--topk) at least this fraction.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of the table.")] = False,
    flips: Annotated[Optional[str], typer.Option("--flips", metavar=PATH_METAVAR, help="Write flipped (and failed) images to FILE as CSV (missing folders are created).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --flips if it exists.")] = False,
    shared_input: Annotated[bool, typer.Option("--shared-input", help="Feed every artifact the reference's tensors, even where a candidate's metadata describes other preprocessing (compares the graphs only).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any image could not be read or any candidate failed on an image.")] = False,
    batch_size: BatchSizeOpt = 32,
    device: DevicesOpt = None,
    workers: WorkersOpt = None,
    graph_opts: Any = None,
    model_opts: Any = None,
) -> None:
    """Label-free agreement of candidates with a reference on real images: top-1, top-k membership and overlap, logit differences, KL.

    Every artifact sees the tensors its own metadata describes (the same tensors wherever the preprocessing matches; a difference is warned about). Unreadable images and per-image candidate failures are listed, never dropped silently. --weights/--pretrained/--num-classes apply to model names (torch); --preset, --labels and the preprocessing flags to ONNX graphs clsx did not make (clsx's artifacts keep their own).

    Exit status 3 when a --min-* gate is missed; 1 when the artifacts are not comparable (class counts or labels differ) or there are no images.
    """
    from clsx.tools.parity import Thresholds, check_output, run_parity, write_flips

    if flips is not None:
        check_output(flips, force=force)  # before any model loads
    report = run_parity(
        reference, candidates, images, topk=topk, batch_size=batch_size, workers=workers,
        thresholds=Thresholds(min_top1=min_top1, min_topk=min_top5), input_mode="shared" if shared_input else "own",
        device=device, model_opts=model_opts,
        graph_opts=graph_opts,
    )
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_table(), nl=as_json)
    if flips is not None:
        write_flips(report, flips, force=force)
        log.info("wrote %s", flips)
    gate = report.gate_error()
    if gate is not None:
        raise gate
    if strict and (report.image_errors or any(c.failed for c in report.candidates)):
        failed = sum(len(c.failed) for c in report.candidates)
        raise ClsxError(f"{len(report.image_errors)} unreadable image(s), {failed} candidate failure(s) (--strict)")


@app.command("val")
@model_flags()
@graph_flags()
def val_cmd(
    artifacts: Annotated[list[str], typer.Argument(help="Artifacts: model.onnx, model.plan, or a model name (torch, with --weights); NAME@BACKEND picks the backend. The first is the baseline of the drop columns.", show_default=False)],
    data: Annotated[Path, typer.Argument(help="Labelled images: an ImageFolder tree (class folders named by WordNet id n01440764, index 0..N-1 or label text) or a CSV of path,label.", show_default=False)],
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="k of the top-k accuracy.")] = 5,
    per_class: Annotated[bool, typer.Option("--per-class", help="Add a per-class table (class, n, top-1, top-k).")] = False,
    min_top1: Annotated[Optional[float], typer.Option("--min-top1", min=0.0, max=1.0, help="Gate: exit 3 unless every artifact's top-1 is at least this fraction, judged on the lower bound of its 95% Wilson interval.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout instead of the table.")] = False,
    batch_size: BatchSizeOpt = 32,
    device: DevicesOpt = None,
    workers: WorkersOpt = None,
    graph_opts: Any = None,
    model_opts: Any = None,
) -> None:
    """Labelled accuracy on DATA: top-1 and top-k with n and a 95% Wilson interval per artifact, and each one's drop against the first.

    Unreadable images are counted and excluded for every artifact. --weights/--pretrained/--num-classes apply to model names (torch); --preset, --labels and the preprocessing flags to ONNX graphs clsx did not make.

    Exit status 3 when --min-top1 is missed; 1 when DATA is missing or malformed, names a class the model does not have, or the artifacts are not the same classifier.
    """
    from clsx.tools.val import run_val

    report = run_val(
        artifacts, data, topk=topk, batch_size=batch_size, per_class=per_class, workers=workers, device=device,
        min_top1=min_top1, model_opts=model_opts,
        graph_opts=graph_opts,
    )
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_table(), nl=as_json)
    gate = report.gate_error()
    if gate is not None:
        raise gate


@app.command("bench")
@model_flags()
@graph_flags()
def bench_cmd(
    artifacts: Annotated[list[str], typer.Argument(help="Artifacts and/or model names (NAME@BACKEND), measured side by side.", show_default=False)],
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes, comma-separated.")] = "1,8,32",
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls per artifact and batch size first.")] = 3,
    iters: Annotated[Optional[int], typer.Option("--iters", min=1, help="Timed calls per artifact and batch size.")] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", min=0.001, help="Timed seconds per artifact and batch size instead (default 3).")] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Interleaving rounds: each round runs every artifact in turn, order rotated.")] = 5,
    images: Annotated[Optional[list[Path]], typer.Option("--images", "-i", help="Image folder or file (repeatable): adds end-to-end timing (decode + preprocess + run + top-k); model-only uses these images' tensors.")] = None,
    max_images: Annotated[Optional[int], typer.Option("--max-images", min=1, help="Use at most this many images.")] = None,
    e2e_batch: Annotated[Optional[str], typer.Option("--e2e-batch", help="Batch sizes of the end-to-end runs (default: --batch).")] = None,
    model_only: Annotated[bool, typer.Option("--model-only", help="Skip the end-to-end runs even with --images.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout (machine, config, runtimes, results) instead of the table.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", "-d", help="auto, cpu, cuda[:N], or tensorrt[:N], for every artifact.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Decode/preprocess threads of the end-to-end runs (default: one per core).")] = None,
    graph_opts: Any = None,
    model_opts: Any = None,
) -> None:
    """Latency (p50/p90/p99) and throughput per artifact and batch size, model-only and (with --images) end to end.

    ONNX graphs clsx did not make take --preset or the preprocessing flags (for --images; model-only timing needs none). Artifacts are interleaved round by round, so their ratios (vs_first: throughput relative to the first artifact) compare runs that saw the same machine load. GPU timings synchronize the device around each call. What actually ran goes to stderr.
    """
    from clsx.tools.bench import run_bench

    if iters is not None and seconds is not None:
        raise typer.BadParameter("give --iters or --seconds, not both", param_hint="--iters/--seconds")
    report = run_bench(
        artifacts, batches=_batch_list(batch, "--batch"), warmup=warmup, iters=iters, seconds=seconds, rounds=rounds,
        images=images or None, e2e_batches=_batch_list(e2e_batch, "--e2e-batch") if e2e_batch else None,
        max_images=max_images, workers=workers, device=device, modes=("model",) if model_only else ("model", "e2e"),
        model_opts=model_opts,
        graph_opts=graph_opts,
    )
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_table(), nl=as_json)


def _batch_list(text: str, flag: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"expected comma-separated positive integers, got {text!r}", param_hint=flag)
    return sizes


@app.command("triton-repo")
def triton_repo_cmd(
    artifacts: Annotated[list[Path], typer.Argument(help=".onnx graphs (clsx's or any other: names, dtypes and dims come from the graph) and/or .plan engines (with their .json sidecars).", show_default=False)],
    repo: Annotated[Path, typer.Option("--output", "-o", help="Model repository folder (created if needed; other models in it are kept).", show_default=False)],
    names: Annotated[Optional[list[str]], typer.Option("--name", help="Model name, once per artifact in order (default: the file name without suffix).")] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", min=1, help="max_batch_size (default: the engine profile's maximum; for ONNX the export's, else 32).")] = None,
    dynamic_batching: Annotated[bool, typer.Option("--dynamic-batching/--no-dynamic-batching", help="Let Triton batch requests together.")] = True,
    queue_delay_us: Annotated[Optional[int], typer.Option("--queue-delay-us", min=0, help="Dynamic batching: longest wait for a fuller batch, in microseconds.")] = None,
    instances: Annotated[int, typer.Option("--instances", min=1, help="Model instances (instance_group count).")] = 1,
    device: Annotated[str, typer.Option("--device", "-d", help="ONNX models: auto (GPU where Triton has one), cpu or gpu. Engines always run on GPU.")] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace model folders that exist.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of the models written instead of their folders.")] = False,
) -> None:
    """Write a Triton Inference Server model repository: one model per artifact, config.pbtxt and labels from its metadata (or, for a graph clsx did not make, from the graph; a fixed batch N > 1 is served with max_batch_size 0)."""
    from clsx.scale.triton_repo import write_triton_repository

    models = write_triton_repository(artifacts, repo, names=names, max_batch=max_batch, dynamic_batching=dynamic_batching,
                                     queue_delay_us=queue_delay_us, instances=instances, device=device.lower(), force=force)
    if as_json:
        typer.echo(json.dumps([m.to_dict(repo) for m in models], indent=2))
    else:
        for m in models:
            typer.echo(str(repo / m.name))


def main() -> None:
    """The console script: SIGTERM and SIGHUP are handled like Ctrl-C (temporary files removed, one line, exit
    128 + the signal); a file-size limit makes writes fail with EFBIG (one line) instead of killing the process;
    a stdout that cannot take the data (full disk, closed pipe) is one line, exit 1."""
    interrupts.install()
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        app()
    finally:
        _flush_stdout()


def _flush_stdout() -> None:
    """Flush stdout now; if it cannot take the data, say so once and point fd 1 at /dev/null so the
    interpreter's own flush at exit does not print a traceback."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        if exc.errno != errno.EPIPE:  # a reader that stopped reading (| head) is not an error
            typer.echo(f"clsx: error: cannot write to stdout: {exc.strerror or exc}", err=True)
            raise SystemExit(1) from None


if __name__ == "__main__":
    main()
