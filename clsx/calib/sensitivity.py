"""Rank layers by how much their quantization alone disturbs the network's output.

For each candidate layer, a graph is run where only that layer is quantized (its activation input
through its Q/DQ pair, its INT8 weights and corrected bias) and every other layer is float; the
signal-to-quantization-noise ratio of the logits against FP32 (dB) is its sensitivity, lowest first.
This is the measure the accuracy gate cares about (the output), not the local error of one tensor:
on efficientnet-lite0 the first depthwise convolution alone costs the output 17.8 dB. Each trial graph
is the float graph plus one layer's Q/DQ nodes taken from one Q/DQ graph, so a candidate costs one
ONNX Runtime session at FP32 speed on an evaluation batch, not a re-quantization.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from clsx.core.optional import require

log = logging.getLogger(__name__)
EXACT_DB = 100.0  # SQNR reported when the output is unchanged


def output_sqnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    """10·log10(Σref² / Σ(candidate - ref)²) in dB, capped at :data:`EXACT_DB`."""
    noise = float(np.sum((candidate.astype(np.float64) - reference) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    if noise == 0.0:
        return EXACT_DB
    return min(EXACT_DB, 10 * math.log10(max(signal, 1e-30) / noise))


def rank_layers(prepared: Path, qdq: Path, batches: Sequence[np.ndarray], input_name: str,
                candidates: Sequence[str]) -> list[tuple[str, float]]:
    """``[(node name, output SQNR dB with only that node quantized), ...]``, most damaging first.

    ``qdq`` is a Q/DQ graph of ``prepared`` in the TensorRT layout (each weighted layer's Q/DQ feeds
    only that layer). Each trial graph is the float graph plus one layer's Q/DQ nodes, so it runs at
    FP32 speed. Deterministic for given inputs.
    """
    import onnx

    ort = require("onnxruntime", purpose="layer sensitivity analysis")
    model = onnx.load(str(prepared))
    qmodel = onnx.load(str(qdq))
    qinits = {t.name: t for t in qmodel.graph.initializer}
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    qnodes = {n.name: n for n in qmodel.graph.node}
    position = {n.name: i for i, n in enumerate(model.graph.node)}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3

    def logits() -> np.ndarray:
        session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {input_name: b})[0] for b in batches])

    reference = logits()
    original = list(model.graph.node)
    ranked: list[tuple[str, float]] = []
    for name in candidates:
        qnode = qnodes.get(name)
        if qnode is None or name not in position:
            continue
        chain, inits = _quantization_chain(qnode, producer, qinits)
        if not chain:
            continue  # nothing of this layer is quantized
        node = original[position[name]]
        saved_inputs = list(node.input)
        node.ClearField("input")
        node.input.extend(qnode.input)
        del model.graph.node[:]
        model.graph.node.extend(original[: position[name]] + chain + original[position[name]:])
        model.graph.initializer.extend(inits)
        try:
            ranked.append((name, output_sqnr(reference, logits())))
        finally:
            del model.graph.initializer[len(model.graph.initializer) - len(inits):]
            node.ClearField("input")
            node.input.extend(saved_inputs)
            del model.graph.node[:]
            model.graph.node.extend(original)
    ranked.sort(key=lambda item: (item[1], item[0]))
    return ranked


def _quantization_chain(qnode, producer, qinits) -> tuple[list, list]:
    """The Q/DQ nodes feeding ``qnode`` in the Q/DQ graph, in graph order, and the initializers they and
    ``qnode`` read that the float graph lacks (quantized weights, scales, zero points, corrected bias)."""
    chain, names = [], []
    for tensor in qnode.input:
        link = producer.get(tensor)
        while link is not None and link.op_type in ("QuantizeLinear", "DequantizeLinear"):
            chain.insert(0, link)
            names.extend(i for i in link.input[1:] if i in qinits)
            if link.input[0] in qinits:
                names.append(link.input[0])
                break
            link = producer.get(link.input[0])
        if tensor in qinits:
            names.append(tensor)
    seen: set[str] = set()
    inits = []
    for name in names:
        if name not in seen:
            seen.add(name)
            copy = type(qinits[name])()
            copy.CopyFrom(qinits[name])
            inits.append(copy)
    ordered = []
    for n in chain:  # a pair can be reached twice (weight and activation never share, but be safe)
        if all(n is not m for m in ordered):
            ordered.append(n)
    return ordered, inits
