"""The export chain (``clsx export``): one model through every artifact asked for, in order.

torch -> ONNX FP32 [+ FP16] (:func:`~clsx.exporter.onnx_export.export_onnx`) -> optional INT8 Q/DQ
calibrated from the FP32 graph (:func:`clsx.calib.calibrate`) -> optional TensorRT engine from the
final graph, INT8 > FP16 > FP32 (:func:`~clsx.exporter.engine.build_engine`) -> optional AOTInductor
package (:func:`~clsx.exporter.aoti.export_aoti`).

Every check that needs no model (the INT8 request, the ONNX outputs, the AOTInductor output) runs
before the model is built, so a bad request fails in a fraction of a second. Importing this module
loads neither torch nor ONNX Runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clsx.calib import CalibOptions
from clsx.core import progress
from clsx.core.errors import ClsxError, SpecError
from clsx.core.spec import FLOAT_NCHW, InputFormat
from clsx.exporter.artifacts import ExportResult
from clsx.exporter.engine import BuildResult, EngineOptions, build_engine

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from clsx.calib import CalibResult
    from clsx.core.spec import PreprocessOverrides
    from clsx.exporter.aoti import AotiResult
    from clsx.zoo import LoadedModel


@dataclass(frozen=True)
class ExportOptions:
    """The model and its ONNX export (``clsx export``'s model and export flags).

    ``weights``/``pretrained``/``num_classes``/``labels``/``preprocess`` build the model
    (:func:`clsx.zoo.build`); ``out`` is the FP32 ``.onnx`` file, an existing folder or a folder
    to create (a string ending in ``/``), default ``<model name>.onnx`` in the current directory; ``batch`` is ``"dynamic"`` or a fixed size; ``max_batch`` the largest batch
    a dynamic graph should serve; ``fp16`` adds ``<stem>.fp16.onnx``; ``verify`` checks every graph
    against torch on ONNX Runtime.
    """

    weights: str | Path | None = None
    pretrained: bool = False
    random_weights: bool = False  # neither weights nor pretrained, on purpose: no warning (--random-weights)
    num_classes: int | None = None
    labels: str | Path | None = None
    preprocess: PreprocessOverrides | None = None
    out: str | Path | None = None
    opset: int | None = None
    batch: str | int = "dynamic"
    max_batch: int | None = None
    fp16: bool = False
    verify: bool = True
    input: str = "float32"  # "uint8": the graphs take pixels and normalize inside (clsx.core.pixel_input)
    input_layout: str | None = None  # NHWC (default for uint8) or NCHW

    @property
    def input_format(self) -> InputFormat:
        """The graphs' input: float32 NCHW, or uint8 pixels (NHWC unless ``input_layout`` says NCHW)."""
        if self.input not in ("float32", "uint8"):
            raise SpecError(f"--input must be float32 or uint8; got {self.input!r}")
        if self.input == "float32":
            if self.input_layout not in (None, "NCHW"):
                raise SpecError("--input-layout NHWC needs --input uint8 (float32 graphs take NCHW)")
            return FLOAT_NCHW
        return InputFormat("uint8", self.input_layout or "NHWC")


@dataclass(frozen=True)
class Int8Options:
    """INT8 calibration of the FP32 graph on ``calib_dir`` (``clsx export --int8``), with ``clsx calib``'s
    options (:class:`clsx.calib.CalibOptions`, validated when built: before any model is)."""

    calib_dir: str | Path
    calib: CalibOptions = field(default_factory=CalibOptions)


@dataclass(frozen=True)
class ChainResult:
    """What :func:`export_chain` wrote: ``paths`` in order (FP32, FP16, INT8, plan, ``.pt2``, as asked
    for) and ``summary``, the JSON document ``clsx export --json`` prints."""

    export: ExportResult
    int8: CalibResult | None
    engine: BuildResult | None
    aoti: AotiResult | None
    paths: list[Path]
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.summary


def export_chain(
    model: str,
    options: ExportOptions | None = None,
    *,
    int8: Int8Options | None = None,
    engine: EngineOptions | None = None,
    aoti: bool = False,
    force: bool = False,
) -> ChainResult:
    """Export ``model`` (a name :func:`clsx.zoo.resolve` knows) to ONNX, then calibrate it to INT8
    (``int8`` given), compile the final graph into a TensorRT engine (``engine`` given) and write an
    AOTInductor package (``aoti``). ``force`` overwrites existing outputs of every step."""
    from clsx.zoo import build, resolve

    opts = options if options is not None else ExportOptions()
    opts.input_format  # noqa: B018  a bad --input/--input-layout fails before anything is built
    start = len(progress.timings)
    _preflight(resolve(model).name, opts, int8=int8, aoti=aoti, force=force)
    loaded = build(model, weights=opts.weights, pretrained=opts.pretrained, num_classes=opts.num_classes,
                   labels=opts.labels, preprocess=opts.preprocess, random_weights=opts.random_weights)
    res = _export(loaded, opts, force=force)
    paths = [res.fp32_path] + ([res.fp16_path] if res.fp16_path is not None else [])
    summary = res.to_dict()
    cal = built = package = None
    if int8 is not None:
        cal = _calibrate(res.fp32_path, int8, force=force)
        paths.append(cal.path)
        summary["int8"] = {"path": str(cal.path), **cal.metadata["calibration"]}
    if engine is not None:
        built = build_engine(paths[-1], options=engine, force=force)
        paths.append(built.path)
        summary["engine"] = {"path": str(built.path), **built.metadata["tensorrt"]}
    if aoti:
        package = _export_aoti(loaded, res.fp32_path, opts, force=force)
        paths.append(package.path)
        summary["aoti"] = package.to_dict()
    steps = progress.timings[start:]
    summary["steps"] = [{"step": what, "seconds": round(seconds, 1)} for what, seconds in steps]
    if len(steps) > 1:
        log.info("steps: %s", progress.format_timings(steps))
    return ChainResult(export=res, int8=cal, engine=built, aoti=package, paths=paths, summary=summary)


def _preflight(name: str, opts: ExportOptions, *, int8: Int8Options | None, aoti: bool, force: bool) -> None:
    """The checks that need no model, in the order ``clsx export`` has always made them."""
    from clsx.exporter.onnx_export import preflight

    if int8 is not None and int8.calib_dir is None:
        raise ClsxError("--int8 needs --calib-dir IMAGES")
    preflight(name, opts.out, opset=opts.opset, batch=opts.batch, max_batch=opts.max_batch, fp16=opts.fp16, force=force)
    if aoti:
        from clsx.exporter.aoti import aoti_path_for, preflight_aoti
        from clsx.exporter.artifacts import resolve_output

        preflight_aoti(aoti_path_for(resolve_output(opts.out, name)), force=force)


def _export(loaded: LoadedModel, opts: ExportOptions, *, force: bool) -> ExportResult:
    from clsx.exporter.onnx_export import export_onnx

    return export_onnx(loaded, opts.out, opset=opts.opset, batch=opts.batch, max_batch=opts.max_batch,
                       fp16=opts.fp16, verify=opts.verify, force=force, input_format=opts.input_format)


def _calibrate(fp32_path: Path, int8: Int8Options, *, force: bool) -> CalibResult:
    from clsx.calib import calibrate

    return calibrate(fp32_path, int8.calib_dir, options=int8.calib, force=force)


def _export_aoti(loaded: LoadedModel, fp32_path: Path, opts: ExportOptions, *, force: bool) -> AotiResult:
    from clsx.exporter.aoti import aoti_path_for, export_aoti

    return export_aoti(loaded, aoti_path_for(fp32_path), batch=opts.batch, max_batch=opts.max_batch, force=force,
                       verify=opts.verify)
