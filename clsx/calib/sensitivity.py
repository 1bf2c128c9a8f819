"""Rank layers by how much their quantization disturbs the network, to keep the worst in float.

Uses ONNX Runtime's quantization debugging tools (``qdq_loss_debug``): both the FP32 and the Q/DQ
graph are run on the same evaluation images with every intermediate activation exposed; for each
activation the signal-to-quantization-noise ratio (SQNR, dB) between the two graphs says how much
error has accumulated up to that point. A layer's sensitivity is the SQNR it loses: SQNR of its input
activation minus SQNR of its output. Layers that destroy the most signal rank first; the first
convolution (whose input is exact) and the classifier typically do, as is known from practice.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from clsx._optional import require

log = logging.getLogger(__name__)
EXACT_DB = 100.0  # SQNR assigned to activations that are identical in both graphs (graph inputs)


def _feeds(batches: Sequence[np.ndarray], input_name: str) -> list[dict[str, np.ndarray]]:
    return [{input_name: b} for b in batches]


def _finite_db(value) -> float:
    v = float(np.mean(value)) if np.ndim(value) else float(value)
    return EXACT_DB if math.isinf(v) or math.isnan(v) or v > EXACT_DB else v


def rank_layers(prepared: Path, qdq: Path, batches: Sequence[np.ndarray], input_name: str,
                candidates: Sequence[str], workdir: Path) -> list[tuple[str, float]]:
    """``[(node name, noise dB), ...]`` for ``candidates``, most damaging first (deterministic).

    Each quantized activation adds noise; its local SQNR (``qdq_err``: the tensor before vs after its
    own Q/DQ, in the same graph) says how much. A candidate node is charged with the noise of the
    tensors it reads and writes (its input activations and, where the graph quantizes it, its output),
    and ranked by the worst of them; keeping the node in float removes those Q/DQ pairs. Pre-activation
    outputs quantized symmetrically (e.g. a stem convolution before ReLU6) typically rank first.
    """
    import onnx

    dbg = require("onnxruntime.quantization.qdq_loss_debug", purpose="layer sensitivity analysis")
    float_aug, qdq_aug = workdir / "float_debug.onnx", workdir / "qdq_debug.onnx"
    dbg.modify_model_output_intermediate_tensors(str(prepared), str(float_aug))
    dbg.modify_model_output_intermediate_tensors(str(qdq), str(qdq_aug))
    float_acts = dbg.collect_activations(str(float_aug), _feeds(batches, input_name))
    qdq_acts = dbg.collect_activations(str(qdq_aug), _feeds(batches, input_name))
    errors = dbg.compute_activation_error(dbg.create_activation_matching(qdq_acts, float_acts))
    local = {name: _finite_db(err["qdq_err"]) for name, err in errors.items() if "qdq_err" in err}

    model = onnx.load(str(prepared), load_external_data=False)
    wanted = set(candidates)
    ranked: list[tuple[str, float]] = []
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        tensors = [t for t in (*node.input[:1], *node.output[:1]) if t in local]
        if tensors:
            ranked.append((node.name, min(local[t] for t in tensors)))
    ranked.sort(key=lambda item: (item[1], item[0]))
    return ranked
