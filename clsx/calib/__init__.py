"""INT8 calibration on an image folder -> a TensorRT-ready Q/DQ ONNX graph (``clsx calib``).

Pipeline (:mod:`clsx.calib.job`): read the FP32 graph's clsx metadata (its preprocessing) -> choose
a seeded calibration sample and a held-out evaluation split disjoint by source photo -> ``quant_pre_process`` ->
collect tensor ranges in bounded chunks (entropy: :mod:`clsx.calib.entropy`, TensorRT's search), and the
per-channel input means bias correction needs (or
reuse a calibration cache, :mod:`clsx.calib.cache`) -> ``quantize_static`` in the target's layout
(``tensorrt``: TensorRT explicit quantization; ``cpu``: ONNX Runtime's fused CPU kernels;
:mod:`clsx.calib.quantize`) -> bias correction (:mod:`clsx.calib.bias_correction`) -> compare INT8
with FP32 on the held-out images (top-1 agreement with n and its 95 % Wilson interval, FP32 top-1 within
INT8 top-5) -> optionally keep the most sensitive layers in float until the interval's lower bound reaches
``min_top1`` (:mod:`clsx.calib.sensitivity`) -> refuse (exit 3) a graph with fewer weighted layers quantized than asked ->
write the graph with its metadata (the calibration summary and agreement figures inside) atomically.
"""

from __future__ import annotations

from clsx.calib.job import CalibOptions, CalibResult, calibrate, default_output
from clsx.calib.quantize import TARGETS, QuantConfig, QuantizationError
from clsx.calib.reader import CalibrationDataError

__all__ = ["calibrate", "CalibOptions", "CalibResult", "QuantConfig", "QuantizationError", "CalibrationDataError", "TARGETS",
           "default_output"]
