"""Tiny ONNX classifiers with external data, and ways to make their named files leave the folder.

``tiny_graph(folder)`` writes ``folder/m.onnx`` (Flatten -> MatMul -> Add, input 3x8x8, 10 classes,
clsx metadata inside) with its weights in ``folder/m.onnx.data``. The helpers then point the graph's
external data somewhere hostile, the way an attacker would hand over such a folder:

- ``link_data_out``: the data file becomes a symbolic link to a file outside the folder;
- ``set_location``: every external tensor's ``location`` is edited in the proto (absolute, ``..``,
  NUL, a folder, a FIFO ...).

Only onnx/numpy are needed (no torch), so each graph takes milliseconds. ``run_clsx`` runs the real
CLI in a child process (``python -m clsx``) with a timeout, so a reader that blocks on a FIFO fails
the test instead of hanging it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SECRET = b"TOP-SECRET-BYTES-" * 512  # 8704 bytes: more than the graph's weights, so no size check stops a reader
CLASSES = 10
INPUT = (3, 8, 8)


def tiny_graph(folder: Path, *, name: str = "m.onnx", location: str | None = None, constant_external: bool = False) -> Path:
    """``folder/name`` with its weights in ``folder/<location>`` (default ``<name>.data``).

    ``constant_external``: the weights are a Constant node's attribute tensor instead of an
    initializer (external data may hide there too: onnx.load and ONNX Runtime read it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from clsx.core.metadata import embed_in_onnx, make_document
    from clsx.core.spec import ModelSpec, PreprocessSpec

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((int(np.prod(INPUT)), CLASSES)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(CLASSES).astype(np.float32), "b")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1)]
    inits = [b]
    if constant_external:
        nodes.append(helper.make_node("Constant", [], ["w"], value=w))
    else:
        inits.append(w)
    nodes += [helper.make_node("MatMul", ["flat", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["logits"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *INPUT])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = ModelSpec(name="tiny", source="onnx", num_classes=CLASSES,
                     preprocess=PreprocessSpec(input_size=INPUT, resize_size=8),
                     labels=tuple(f"class{i}" for i in range(CLASSES)))
    doc = make_document(spec, artifact="onnx", precision="fp32",
                        inputs=[{"name": "input", "shape": ["batch", *INPUT], "dtype": "float32"}],
                        outputs=[{"name": "logits", "shape": ["batch", CLASSES], "dtype": "float32"}],
                        producer={"batch": {"dynamic": True, "size": None, "max": 8}})
    embed_in_onnx(model, doc)
    path = folder / name
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location or f"{name}.data", size_threshold=0)
    if constant_external:  # onnx.save_model externalises initializers only: move the Constant's tensor by hand
        _externalise_constant(path, location or f"{name}.data")
    return path


def _externalise_constant(path: Path, location: str) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    data = path.parent / location
    offset = data.stat().st_size if data.exists() else 0
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                t = attr.t
                raw = t.raw_data or onnx.numpy_helper.to_array(t).tobytes()
                with open(data, "ab") as f:
                    f.write(raw)
                t.ClearField("raw_data")
                t.ClearField("float_data")
                t.data_location = onnx.TensorProto.EXTERNAL
                del t.external_data[:]
                for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
                    e = t.external_data.add()
                    e.key, e.value = k, v
                offset += len(raw)
    onnx.save(model, str(path))


def secret_file(where: Path) -> Path:
    """A file outside every artifact folder, holding bytes that must never be read through one."""
    where.mkdir(parents=True, exist_ok=True)
    p = where / "secret.bin"
    p.write_bytes(SECRET)
    return p


def link_data_out(graph: Path, target: Path) -> Path:
    """Replace the graph's data file by a symbolic link to ``target`` (outside the folder)."""
    data = graph.parent / f"{graph.name}.data"
    data.unlink()
    data.symlink_to(os.path.abspath(target))
    return data


def set_location(graph: Path, location: str) -> None:
    """Edit every external tensor's ``location`` in the proto (offsets kept)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    for t in _tensors(model):
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    graph.write_bytes(model.SerializeToString())


def _tensors(model):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


def write_image(path: Path) -> Path:
    """A small real JPEG (infer loads the model only when it has an image to classify)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def run_clsx(*args: str | os.PathLike, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m clsx ARGS`` in a child process (PYTHONPATH inherited); stdout/stderr as text."""
    env = dict(os.environ)
    env.pop("CLSX_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "clsx", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one line a user error prints on stderr (asserted to be exactly one)."""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1, f"exit {res.returncode}; stderr:\n{res.stderr}"
    assert len(lines) == 1, f"expected one error line, got:\n{res.stderr}"
    assert lines[0].startswith("clsx: error: "), lines[0]
    return lines[0]
