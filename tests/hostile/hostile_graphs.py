"""Tiny real ONNX graphs whose clsx metadata tests then make hostile (no torch export: milliseconds).

``graph(size)`` is Conv(3->4) -> GlobalAveragePool -> Flatten -> Gemm(4->classes) on a
``[batch, 3, size, size]`` input: ONNX Runtime runs it, and its input shape is what a document's
input size is checked against. ``write(path, doc)`` stores ``doc`` (a dict, or raw text for documents
JSON cannot express, e.g. nesting 100000 deep) in the graph's ``metadata_props``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from clsx.core.metadata import ONNX_METADATA_KEY, make_document
from clsx.core.spec import ModelSpec, PreprocessSpec

CLASSES = 10


def graph(size: int = 224, classes: int = CLASSES) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "conv_b"),
        numpy_helper.from_array(rng.standard_normal((classes, 4)).astype(np.float32) * 10, "fc_w"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["conv"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def spec(size: int = 224, classes: int = CLASSES) -> ModelSpec:
    return ModelSpec(name="hostile", source="custom", num_classes=classes, labels=tuple(f"c{i}" for i in range(classes)),
                     preprocess=PreprocessSpec(input_size=(3, size, size), resize_size=size + size // 7))


def document(size: int = 224, classes: int = CLASSES) -> dict[str, Any]:
    """A valid document for ``graph(size, classes)``, as JSON would return it."""
    doc = make_document(spec(size, classes), artifact="onnx", precision="fp32",
                        inputs=[{"name": "input", "shape": ["batch", 3, size, size], "dtype": "float32"}],
                        outputs=[{"name": "logits", "shape": ["batch", classes], "dtype": "float32"}],
                        producer={"exporter": "hostile-test", "batch": {"dynamic": True, "size": None, "max": None}})
    return json.loads(json.dumps(doc))


def write(path: Path, doc: dict[str, Any] | str | None, *, size: int = 224, classes: int = CLASSES) -> Path:
    """``graph(size)`` at ``path`` with ``doc`` (dict or raw JSON text; None: no metadata) inside."""
    model = graph(size, classes)
    if doc is not None:
        entry = model.metadata_props.add()
        entry.key = ONNX_METADATA_KEY
        entry.value = doc if isinstance(doc, str) else json.dumps(doc)
    onnx.save(model, str(path))
    return path
