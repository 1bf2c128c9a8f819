"""The ``clsx`` command line. Each command is a thin shim over a library function.

stdout carries data only (CSV, JSON, tables); logs, warnings and progress go to stderr.
Exit status: 0 ok, 1 user error (one line on stderr), 2 usage error, 3 a verification/parity gate
failed. ``--debug`` (or CLSX_DEBUG=1) shows tracebacks for user errors too. Heavy libraries are
imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from typer.core import TyperGroup

from clsx import __version__
from clsx.errors import ClsxError

log = logging.getLogger("clsx")
_DEBUG = os.environ.get("CLSX_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


class _ClsxGroup(TyperGroup):
    """Turns ClsxError into one line on stderr and its exit status; anything else is a bug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClsxError as exc:
            if _DEBUG:
                raise
            click.echo(f"clsx: error: {exc}", err=True)
            raise click.exceptions.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_ClsxGroup,
    name="clsx",
    help="Export, calibrate, compile and run image classifiers: torch -> ONNX (FP32/FP16/INT8) -> TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"clsx: {record.levelname.lower()}: {msg}"
        return f"clsx: {msg}"


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter())
    root = logging.getLogger("clsx")
    root.handlers[:] = [handler]
    root.setLevel(level)


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

ModelArg = Annotated[str, typer.Argument(help="Model: resnet50, tv:NAME, timm:NAME[.TAG] or package.module:function.", show_default=False)]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", "-w", help="Checkpoint (.pth/.pt/.safetensors), loaded without executing pickled code.")]
PretrainedOpt = Annotated[bool, typer.Option("--pretrained", help="Use the source library's own pretrained weights (downloads).")]
NumClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", min=1, help="Classifier outputs (custom heads).")]
LabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="Class names: a text file (one per line) or a JSON list.")]
InputSizeOpt = Annotated[Optional[str], typer.Option("--input-size", help="N, HxW or CxHxW (e.g. 224 or 3x32x32).")]
MeanOpt = Annotated[Optional[str], typer.Option("--mean", help="Per-channel mean, comma-separated (in units of the input range).")]
StdOpt = Annotated[Optional[str], typer.Option("--std", help="Per-channel std, comma-separated.")]
InterpOpt = Annotated[Optional[str], typer.Option("--interpolation", help="Resize filter: bilinear, bicubic, nearest, lanczos, box, hamming.")]
CropPctOpt = Annotated[Optional[float], typer.Option("--crop-pct", help="Center-crop fraction: the shorter side is resized to size/crop_pct.")]


def preprocess_overrides(input_size: str | None, mean: str | None, std: str | None, interpolation: str | None, crop_pct: float | None):
    """CLI preprocessing flags -> PreprocessOverrides (the highest-precedence layer)."""
    from clsx.spec import PreprocessOverrides, parse_floats, parse_input_size

    return PreprocessOverrides(
        input_size=parse_input_size(input_size) if input_size else None,
        mean=parse_floats(mean, what="--mean") if mean else None,
        std=parse_floats(std, what="--std") if std else None,
        interpolation=interpolation.lower() if interpolation else None,
        crop_pct=crop_pct,
    )


# ---------------------------------------------------------------------------------------------
# Commands


@app.command("models")
def models_cmd(
    pattern: Annotated[str, typer.Argument(help="Wildcard filter, e.g. 'resnet*' or '*efficientnet*'.")] = "*",
    source: Annotated[Optional[str], typer.Option("--source", "-s", help="Only this source: torchvision or timm.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON list on stdout instead of a table.")] = False,
) -> None:
    """List buildable models with their source, default input size and parameter count."""
    from clsx.zoo import list_models

    entries = list_models(pattern, source)
    if as_json:
        typer.echo("[\n" + ",\n".join(json.dumps(e.to_dict()) for e in entries) + "\n]" if entries else "[]")
        return
    if not entries:
        log.warning("no model matches %r", pattern)
        return
    width = max(len(e.name) for e in entries)
    typer.echo(f"{'NAME':<{width}}  {'SOURCE':<11}  {'INPUT':<11}  PARAMS")
    for e in entries:
        params = f"{e.params / 1e6:.1f}M" if e.params is not None else "-"
        typer.echo(f"{e.name:<{width}}  {e.source:<11}  {'x'.join(map(str, e.input_size)):<11}  {params}")
    log.info("%d models", len(entries))


@app.command("demo")
def demo_cmd(
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, max=1000, help="Classes per image.")] = 5,
) -> None:
    """Run the main job on built-in material: a real-weights model on real sample photos, top-k CSV on stdout."""
    from clsx.demo import run_demo

    run_demo(sys.stdout, topk=topk)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
