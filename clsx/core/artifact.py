"""The files that make up one artifact on disk, for copying it somewhere else whole.

A clsx artifact can be more than one file: the dynamo exporter may keep large weights in an external
``<model>.onnx.data`` file, and TensorRT plans carry their metadata in a ``<plan>.json`` sidecar.
Triton repositories and Ray workers on other machines need all of them.
"""

from __future__ import annotations

from pathlib import Path

from clsx.core.errors import ClsxError
from clsx.core.metadata import sidecar_path


def onnx_external_data(path: Path) -> list[Path]:
    """External data files an ONNX graph refers to (relative to its folder), in first-use order."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ClsxError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    found: list[Path] = []
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location")
        if not location:
            continue
        rel = Path(location)
        if rel.is_absolute() or ".." in rel.parts:
            raise ClsxError(f"{path}: external data location {location!r} is outside the model's folder")
        data = path.parent / rel
        if not data.is_file():
            raise ClsxError(f"{path}: its external data file {data} is missing")
        if data not in found:
            found.append(data)
    return found


def _all_tensors(graph):
    """Initializers of a graph and of its subgraphs (If/Loop bodies)."""
    import onnx

    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_tensors(g)


def artifact_files(path: str | Path, *, sidecar: bool = True) -> list[Path]:
    """The artifact itself first, then its ONNX external data files and (``sidecar``) its sidecar JSON."""
    p = Path(path)
    files = [p]
    if p.suffix.lower() == ".onnx":
        files += onnx_external_data(p)
    side = sidecar_path(p)
    if sidecar and side.is_file():
        files.append(side)
    return files
