"""Graphs that take pixels: ``clsx export --input uint8`` puts the normalization into the ONNX graph.

The exported float graph's input ``input`` [N, C, H, W] float32 becomes an inner value; a new input
``input`` takes uint8 pixels, NHWC (default: what a decoded, cropped image already is) or NCHW, and
four nodes in front compute what the host would (:func:`clsx.core.preprocess.to_tensor`):

    input (uint8) -> Cast(float) -> [Transpose 0,3,1,2] -> Mul(scale[c]) -> Add(offset[c]) -> the model

(Cast first: TensorRT accepts a uint8 network input only when a Cast reads it.)

``scale = 1 / (255 / input_range * std)`` and ``offset = -mean / std`` per channel, float32, the same
constants and the same two float32 roundings as the host's one-pass normalization, so the graph sees
the tensor the float graph would have seen, bit for bit. Channel order stays the host's (the pixels
arrive in ``channel_order``). The nodes are named ``clsx_pixels/...``: the FP16 conversion keeps
them in FP32 (a cast to FP16 follows the Add) and INT8 calibration leaves them unquantized (a Q/DQ on
raw 0..255 pixels would cost a bit of input precision). TensorRT folds the Mul/Add into the first
convolution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from clsx.core.spec import FLOAT_NCHW, InputFormat, PreprocessSpec

if TYPE_CHECKING:
    import onnx

#: Name prefix of the nodes and constants :func:`add_pixel_input` adds.
PIXEL_PREFIX = "clsx_pixels/"


def is_pixel_node(name: str) -> bool:
    return name.startswith(PIXEL_PREFIX)


def add_pixel_input(model: "onnx.ModelProto", pre: PreprocessSpec, fmt: InputFormat, input_name: str = "input") -> None:
    """Rewrite ``model`` (in place) to take ``fmt`` (uint8, NHWC or NCHW) pixels on ``input_name``."""
    from onnx import TensorProto, helper, numpy_helper

    from clsx.core.preprocess import pixel_constants

    if fmt.normalized_on_host:
        if fmt != FLOAT_NCHW:
            raise ValueError(f"clsx exports float32 NCHW or uint8 graphs; got {fmt.dtype} {fmt.layout}")
        return
    graph = model.graph
    old = next(i for i in graph.input if i.name == input_name)
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    inner = f"{PIXEL_PREFIX}normalized"
    for node in graph.node:
        node.input[:] = [inner if n == input_name else n for n in node.input]
    n, c, h, w = dims
    new = helper.make_tensor_value_info(input_name, TensorProto.UINT8, [n, h, w, c] if fmt.layout == "NHWC" else [n, c, h, w])
    graph.input.remove(old)
    graph.input.insert(0, new)
    scale, offset = pixel_constants(pre)
    shaped = (1, len(scale), 1, 1)
    graph.initializer.extend([numpy_helper.from_array(scale.reshape(shaped), f"{PIXEL_PREFIX}scale"),
                              numpy_helper.from_array(offset.reshape(shaped), f"{PIXEL_PREFIX}offset")])
    # Cast first: TensorRT takes a uint8 network input only straight into a Cast (its Transpose refuses uint8)
    nodes: list[Any] = [helper.make_node("Cast", [input_name], [f"{PIXEL_PREFIX}float"], to=TensorProto.FLOAT, name=f"{PIXEL_PREFIX}cast")]
    src = f"{PIXEL_PREFIX}float"
    if fmt.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [src], [f"{PIXEL_PREFIX}nchw"], perm=[0, 3, 1, 2], name=f"{PIXEL_PREFIX}transpose"))
        src = f"{PIXEL_PREFIX}nchw"
    nodes += [
        helper.make_node("Mul", [src, f"{PIXEL_PREFIX}scale"], [f"{PIXEL_PREFIX}scaled"], name=f"{PIXEL_PREFIX}scale"),
        helper.make_node("Add", [f"{PIXEL_PREFIX}scaled", f"{PIXEL_PREFIX}offset"], [inner], name=f"{PIXEL_PREFIX}offset"),
    ]
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)


def random_pixels(rng: np.random.Generator, n: int, chw: tuple[int, int, int], fmt: InputFormat) -> np.ndarray:
    """``n`` images of uniform random pixels in ``fmt``'s layout (uint8)."""
    return rng.integers(0, 256, size=fmt.batch_shape(n, chw), dtype=np.uint8)
