"""The artifact metadata document: one JSON contract for every file clsx writes.

ONNX files carry it inside ``metadata_props`` under the key ``clsx``; every artifact (ONNX, TensorRT
plan, AOTInductor package) also has a sidecar ``<file>.json`` with the same document, so trtexec and
C++ TensorRT load plans unchanged and the C++ library reads the same JSON.

Document (schema 1)::

    {
      "schema_version": 1,
      "clsx_version": "0.1.0",
      "artifact": "onnx" | "tensorrt" | "aoti",
      "precision": "fp32" | "fp16" | "int8",
      "model": ModelSpec.to_dict()          # name, source, ref, num_classes, weights, preprocess, labels
      "inputs":  [{"name": "input",  "shape": ["batch", 3, 224, 224], "dtype": "float32"}],
      "outputs": [{"name": "logits", "shape": ["batch", 1000], "dtype": "float32"}],
      "parent_sha256": "<sha256 of the graph this one was derived from>" | null,
      "producer": {...},                    # exporter used, opset, torch/onnx versions ...
      "calibration": {...} | null,          # INT8: method, images, agreement figures
      "tensorrt": {...} | null,             # flavour, version, compute capabilities, profile shapes
      "verification": {...} | null          # what was checked when the artifact was written
      "external_data": {"file", "bytes", "sha256"}  # only an ONNX graph of 2 GiB or more: its weights file beside it
    }

Readers accept any document whose ``schema_version`` is not newer than :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from clsx import __version__
from clsx.core.errors import ClsxError
from clsx.core.spec import ModelSpec

SCHEMA_VERSION = 1
ONNX_METADATA_KEY = "clsx"
PRECISIONS = ("fp32", "fp16", "int8")


class MetadataError(ClsxError):
    """An artifact without clsx metadata, or with metadata this version cannot read."""


def make_document(
    spec: ModelSpec,
    *,
    artifact: str,
    precision: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    parent_sha256: str | None = None,
    producer: Mapping[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """Assemble a metadata document. Extra keyword sections (calibration, tensorrt, verification ...)
    are stored as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "clsx_version": __version__,
        "artifact": artifact,
        "precision": precision,
        "model": spec.to_dict(),
        "inputs": inputs,
        "outputs": outputs,
        "parent_sha256": parent_sha256,
        "producer": dict(producer or {}),
    }
    doc.update(sections)
    return doc


def check_document(doc: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or "schema_version" not in doc or "model" not in doc:
        raise MetadataError(f"{where}: not a clsx metadata document")
    if int(doc["schema_version"]) > SCHEMA_VERSION:
        raise MetadataError(
            f"{where}: metadata schema {doc['schema_version']} is newer than this clsx understands "
            f"({SCHEMA_VERSION}); upgrade clsx"
        )
    return doc


def spec_of(doc: Mapping[str, Any]) -> ModelSpec:
    """The ModelSpec stored in a document."""
    return ModelSpec.from_dict(doc["model"])


def sidecar_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".json")


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def write_sidecar(path: str | Path, doc: Mapping[str, Any], *, force: bool = True) -> Path:
    """Publish ``<path>.json`` alone (an annotation of an existing file). Artifacts written with their
    sidecar publish both in one :class:`~clsx.core.files.OutputSet` instead."""
    from clsx.core.files import write_file

    return write_file(sidecar_path(path), dumps(doc), force=force)


def embed_in_onnx(model_proto: Any, doc: Mapping[str, Any]) -> None:
    """Store ``doc`` in an ``onnx.ModelProto``'s ``metadata_props`` (replacing an older clsx entry)."""
    props = model_proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == ONNX_METADATA_KEY:
            del props[i]
    entry = props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = json.dumps(doc, sort_keys=False)


def read_onnx_metadata(path: str | Path) -> dict[str, Any] | None:
    """The document inside an ONNX file, or None when it has none (external weights are not loaded)."""
    import onnx

    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except FileNotFoundError:
        raise MetadataError(f"{p}: no such file") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise MetadataError(f"{p}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            try:
                return check_document(json.loads(prop.value), where=str(p))
            except json.JSONDecodeError as exc:
                raise MetadataError(f"{p}: clsx metadata is not valid JSON ({exc})") from None
    return None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The clsx document of any artifact: from inside an ONNX file, else from its sidecar JSON."""
    p = Path(path)
    if not p.exists():
        raise MetadataError(f"{p}: no such file")
    if p.suffix.lower() == ".onnx":
        doc = read_onnx_metadata(p)
        if doc is not None:
            return doc
    side = sidecar_path(p)
    if side.exists():
        try:
            return check_document(json.loads(side.read_text()), where=str(side))
        except json.JSONDecodeError as exc:
            raise MetadataError(f"{side}: invalid JSON ({exc})") from None
    raise MetadataError(f"{p}: no clsx metadata (not inside the file, and no sidecar {side.name})")
