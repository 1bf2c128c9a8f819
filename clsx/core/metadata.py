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

A *partial* document (``model.preprocess`` null, ``model.num_classes`` possibly null) describes a graph
clsx did not make: what its own signature says (:func:`clsx.core.graph_io.graph_document`), or the
sidecar of a plan built from it. :func:`spec_of` refuses it with the one line that lists the options
supplying preprocessing (:data:`PREPROCESS_OPTIONS`); :mod:`clsx.runtimes.foreign` completes it.

Readers accept any document whose ``schema_version`` is not newer than :data:`SCHEMA_VERSION`, once
:func:`check_document` (the one validator every document read from a file goes through: ONNX
metadata, sidecars, Triton's ``clsx.json``) has found it well-formed: types, finite numbers, nesting
at most :data:`MAX_JSON_DEPTH`, a valid bounded model spec, inputs that agree with it and, for ONNX
files, with the graph's own input shape.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from clsx import __version__
from clsx.core.artifact import check_document_names, checked_file, read_sidecar_text, read_text_file, sidecar_path
from clsx.core.errors import ClsxError, SpecError
from clsx.core.spec import LAYOUTS, MAX_NUM_CLASSES, InputFormat, ModelSpec, is_int, show_value

SCHEMA_VERSION = 1
ONNX_METADATA_KEY = "clsx"
PRECISIONS = ("fp32", "fp16", "int8")


#: The deepest nesting a document (or a calibration cache) may have; clsx writes 5 levels. Deeper
#: JSON (``[[[[...]]]]`` 100000 deep) is one line, not a RecursionError.
MAX_JSON_DEPTH = 32


class MetadataError(ClsxError):
    """An artifact without clsx metadata, or with metadata this version cannot read."""


class InputSizeMismatchError(MetadataError):
    """A spec whose input size disagrees with the graph it is meant for (metadata, flags or a given spec)."""


class NoMetadataError(MetadataError):
    """An artifact with no clsx document at all (inside or beside it)."""


class PreprocessUnknownError(MetadataError, SpecError):
    """A graph (or a plan built from one) whose document does not say how images are preprocessed."""


#: The options that supply preprocessing for a graph clsx did not make (the one line that lists them).
PREPROCESS_OPTIONS = ("--preset MODEL (e.g. timm:tf_efficientnet_lite0), or --input-size, --mean, --std, --interpolation, "
                      "--crop-pct/--resize-size, --channel-order, --input-range, --labels; or annotate it once: "
                      "clsx annotate GRAPH --preset MODEL")


def is_partial(doc: Mapping[str, Any]) -> bool:
    """Whether ``doc`` was read from a graph alone: ``model.preprocess`` is null (not known)."""
    model = doc.get("model")
    return isinstance(model, Mapping) and "preprocess" in model and model["preprocess"] is None


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


# ---------------------------------------------------------------------------------------------
# The one validator of documents read from files (ONNX metadata_props, sidecars, Triton's clsx.json)


def parse_json(text: str, where: str, *, invalid: str = "invalid JSON", error: type[ClsxError] = MetadataError) -> Any:
    """``json.loads`` whose failures are one ``error`` line naming ``where`` (nesting too deep for
    Python's parser included). NaN/Infinity tokens parse here; :func:`check_json_tree` refuses them."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: {invalid} ({exc})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep; refused") from None


def _path(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if len(part) <= 40 and part.replace("_", "a").isalnum() else show_value(part).rsplit(" (", 1)[0]
            out += f".{key}" if out else key
    return out or "the document"


def check_json_tree(value: Any, where: str, *, error: type[ClsxError] = MetadataError, max_depth: int = MAX_JSON_DEPTH,
                    finite: bool = True) -> None:
    """Refuse JSON nested deeper than ``max_depth`` and (``finite``) NaN or infinite numbers, naming
    the path of the first offender. Iterative: no recursion on hostile input."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, parts = stack.pop()
        if len(parts) >= max_depth and isinstance(node, (dict, list)):
            raise error(f"{where}: {_path(parts[:3])}... is nested more than {max_depth} levels deep; refused")
        if isinstance(node, dict):
            stack.extend((v, (*parts, str(k))) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                item = node[i]
                if isinstance(item, (dict, list)):
                    stack.append((item, (*parts, i)))
                elif finite and isinstance(item, float) and not math.isfinite(item):
                    stack.append((item, (*parts, i)))
        elif finite and isinstance(node, float) and not math.isfinite(node):
            raise error(f"{where}: {_path(parts)} is {node}: numbers must be finite (NaN and Infinity are not JSON)")


#: Top-level sections and what each must be when present (None: may also be null).
_SECTION_TYPES: dict[str, tuple[type, ...]] = {
    "clsx_version": (str,), "artifact": (str,), "precision": (str,), "parent_sha256": (str, type(None)),
    "inputs": (list,), "outputs": (list,), "producer": (dict, type(None)), "calibration": (dict, type(None)),
    "tensorrt": (dict, type(None)), "verification": (dict, type(None)), "external_data": (dict, type(None)),
}
_KINDS = {str: "a string", list: "a list", dict: "an object", type(None): "null"}


def _fail(where: str, field: str, problem: str) -> MetadataError:
    return MetadataError(f"{where}: {field} {problem}")


def _want(doc: Mapping[str, Any], key: str, types: tuple[type, ...], where: str, field: str) -> Any:
    value = doc.get(key)
    if key in doc and not isinstance(value, types):
        raise _fail(where, field, f"must be {' or '.join(_KINDS[t] for t in types)}; got {show_value(value)}")
    return value


def _check_tensors(doc: Mapping[str, Any], key: str, where: str) -> None:
    for i, t in enumerate(doc.get(key) or []):
        field = f"{key}[{i}]"
        if not isinstance(t, dict):
            raise _fail(where, field, f"must be an object (name, shape, dtype); got {show_value(t)}")
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise _fail(where, f"{field}.name", f"must be a non-empty string; got {show_value(t.get('name'))}")
        shape = t.get("shape", [])
        if not isinstance(shape, list) or len(shape) > 8 or not all((is_int(d) and d >= 1) or isinstance(d, str) for d in shape):
            raise _fail(where, f"{field}.shape", f"must be a list of positive sizes or axis names; got {show_value(shape)}")
        if not isinstance(t.get("dtype", "float32"), str):
            raise _fail(where, f"{field}.dtype", f"must be a string; got {show_value(t.get('dtype'))}")
        if t.get("layout") is not None and t["layout"] not in LAYOUTS:
            raise _fail(where, f"{field}.layout", f"must be one of {', '.join(LAYOUTS)}; got {show_value(t['layout'])}")
        if "max_batch" in t and t["max_batch"] is not None and not (is_int(t["max_batch"]) and t["max_batch"] >= 1):
            raise _fail(where, f"{field}.max_batch", f"must be a positive integer; got {show_value(t['max_batch'])}")


def _check_sections(doc: Mapping[str, Any], where: str) -> None:
    for key, types in _SECTION_TYPES.items():
        _want(doc, key, types, where, key)
    if "precision" in doc and doc["precision"] not in PRECISIONS:
        raise _fail(where, "precision", f"must be one of {', '.join(PRECISIONS)}; got {show_value(doc['precision'])}")
    _check_tensors(doc, "inputs", where)
    _check_tensors(doc, "outputs", where)
    producer = doc.get("producer") or {}
    batch = _want(producer, "batch", (dict, type(None)), where, "producer.batch") or {}
    for key in ("size", "max"):
        if batch.get(key) is not None and not (is_int(batch[key]) and batch[key] >= 1):
            raise _fail(where, f"producer.batch.{key}", f"must be a positive integer or null; got {show_value(batch[key])}")
    _want(producer, "fp16", (dict, type(None)), where, "producer.fp16")
    trt = doc.get("tensorrt") or {}
    profile = _want(trt, "profile", (dict, type(None)), where, "tensorrt.profile") or {}
    for key in ("min", "opt", "max"):
        dims = profile.get(key)
        if key in profile and not (isinstance(dims, list) and dims and all(is_int(d) and d >= 1 for d in dims)):
            raise _fail(where, f"tensorrt.profile.{key}", f"must be a list of positive integers; got {show_value(dims)}")
    _want(trt, "compute_capabilities", (list, type(None)), where, "tensorrt.compute_capabilities")


def _size(dims: Any) -> str:
    return "x".join(str(d) if isinstance(d, int) else "?" for d in dims)


def check_graph_input(input_size: tuple[int, int, int], graph_shape: tuple[Any, ...] | None, *, where: str,
                      says: str = "metadata says", layout: str = "NCHW") -> None:
    """Refuse a spec whose (C, H, W) disagrees with the static dims of the graph's image input (NCHW,
    or NHWC with ``layout``), before any image is decoded at that size (``metadata says 3x12000x12000
    but the graph takes 3x224x224``)."""
    if graph_shape is None or len(graph_shape) != 4:
        return
    dims = InputFormat(layout=layout).chw(tuple(graph_shape[1:]))
    if any(isinstance(g, int) and g > 0 and g != s for g, s in zip(dims, input_size)):
        raise InputSizeMismatchError(f"{where}: {says} {_size(input_size)} but the graph takes {_size(dims)}")


def check_document(doc: Any, *, where: str, graph_input: tuple[Any, ...] | None = None) -> dict[str, Any]:
    """The one validator of a metadata document read from a file: structure, types, finite numbers,
    nesting depth, the model spec (:meth:`ModelSpec.from_dict`: channels, std > 0, labels, bounded
    sizes), the inputs' agreement with the spec and (``graph_input``: the ONNX graph's input shape)
    with the graph. Any problem is one :class:`MetadataError` line naming ``where`` and the field."""
    if not isinstance(doc, dict) or "schema_version" not in doc or "model" not in doc:
        raise MetadataError(f"{where}: not a clsx metadata document")
    check_json_tree(doc, where, finite=False)
    version = doc["schema_version"]
    if not is_int(version) or version < 1:
        raise _fail(where, "schema_version", f"must be a positive integer; got {show_value(version)}")
    if version > SCHEMA_VERSION:
        raise MetadataError(
            f"{where}: metadata schema {version} is newer than this clsx understands "
            f"({SCHEMA_VERSION}); upgrade clsx"
        )
    model = doc["model"]
    if not isinstance(model, dict):
        raise _fail(where, "model", f"must be an object; got {show_value(model)}")
    n = model.get("num_classes")
    partial = is_partial(doc)  # a graph's own signature, no preprocessing: checked as far as it goes
    if "num_classes" in model and not (is_int(n) and 1 <= n <= MAX_NUM_CLASSES) and not (partial and n is None):
        raise _fail(where, "model.num_classes", f"must be an integer from 1 to {MAX_NUM_CLASSES}; got {show_value(n)}")
    try:
        spec = ModelSpec.from_dict({**model, "preprocess": {}, "num_classes": n or 0} if partial else model)
    except SpecError as exc:
        raise MetadataError(f"{where}: {exc}") from None
    _check_sections(doc, where)
    check_json_tree(doc, where)  # NaN/Infinity anywhere else (the spec's numbers were checked above)
    inputs = doc.get("inputs") or []
    layout = (inputs[0].get("layout") if inputs else None) or "NCHW"
    if partial:
        return doc
    if inputs:
        shape = inputs[0].get("shape", [])
        chw = InputFormat(layout=layout).chw(tuple(shape[1:])) if len(shape) == 4 else ()
        if any(isinstance(d, int) and d != s for d, s in zip(chw, spec.preprocess.input_size)):
            raise MetadataError(f"{where}: model.preprocess.input_size is {_size(spec.preprocess.input_size)} "
                                f"but inputs[0].shape is {show_value(shape).rsplit(' (', 1)[0]}")
    check_graph_input(spec.preprocess.input_size, graph_input, where=where, layout=layout)
    return doc


def onnx_input_shape(model: Any) -> tuple[Any, ...] | None:
    """The shape of an ``onnx.ModelProto``'s first (non-initializer) input: ints for static dims,
    names (or ``"?"``) for dynamic ones; None when the graph has no input."""
    inits = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
    return None


def onnx_input_shape_of(path: str | Path) -> tuple[Any, ...] | None:
    """:func:`onnx_input_shape` of the ONNX file at ``path`` (external weights not loaded); None when
    it cannot be read (whoever opens it next reports why)."""
    import onnx

    try:
        checked_file(path, what="ONNX graph")
        return onnx_input_shape(onnx.load(str(path), load_external_data=False))
    except Exception:  # noqa: BLE001  protobuf DecodeError, ClsxError, OSError ...
        return None


def spec_of(doc: Mapping[str, Any], *, where: str = "metadata") -> ModelSpec:
    """The ModelSpec stored in a document (one MetadataError line if it is not a valid spec; a partial
    document, read from a graph alone, is :class:`PreprocessUnknownError` listing the options that supply it)."""
    if is_partial(doc):
        raise PreprocessUnknownError(f"{where}: no clsx metadata, so its preprocessing is unknown; pass {PREPROCESS_OPTIONS}")
    try:
        return ModelSpec.from_dict(doc["model"])
    except SpecError as exc:
        raise MetadataError(f"metadata: {exc}") from None


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
    if not p.exists():
        raise MetadataError(f"{p}: no such file")
    checked_file(p, what="ONNX graph")  # a FIFO or a folder is refused before onnx.load blocks on it
    try:
        model = onnx.load(str(p), load_external_data=False)
    except FileNotFoundError:
        raise MetadataError(f"{p}: no such file") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise MetadataError(f"{p}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            doc = check_document(parse_json(prop.value, str(p), invalid="clsx metadata is not valid JSON"), where=str(p),
                                 graph_input=onnx_input_shape(model))
            check_document_names(p, doc)
            return doc
    return None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The clsx document of any artifact: from inside an ONNX file, else from its sidecar JSON."""
    p = Path(path)
    if not p.exists():
        raise MetadataError(f"{p}: no such file")
    checked_file(p)
    if p.suffix.lower() == ".onnx":
        doc = read_onnx_metadata(p)
        if doc is not None:
            return doc
    found = read_sidecar_text(p)  # refused if the sidecar is a link out of the folder, a FIFO ...
    if found is not None:
        side, text = found
        graph = onnx_input_shape_of(p) if p.suffix.lower() == ".onnx" else None  # an ONNX graph whose document is beside it
        doc = check_document(parse_json(text, str(side)), where=str(side), graph_input=graph)
        check_document_names(p, doc)
        return doc
    if p.suffix.lower() == ".json":  # a document on its own: Triton's <model>/clsx.json, a sidecar named directly
        return read_document(p)
    raise NoMetadataError(f"{p}: no clsx metadata (not inside the file, and no sidecar {sidecar_path(p).name})")


def read_metadata_or_graph(path: str | Path) -> dict[str, Any]:
    """:func:`read_metadata`, or for an ONNX graph without a document the partial one its own signature
    gives (:func:`clsx.core.graph_io.graph_document`: inputs, outputs, class count; preprocessing null)."""
    try:
        return read_metadata(path)
    except NoMetadataError:
        if Path(path).suffix.lower() != ".onnx":
            raise
    from clsx.core.graph_io import graph_document, read_graph_io

    return graph_document(read_graph_io(path))


def read_document(path: str | Path) -> dict[str, Any]:
    """A metadata document stored on its own (``<model>/clsx.json`` of a Triton repository), validated
    by :func:`check_document` like every document clsx reads."""
    p = checked_file(path, what="metadata document")
    text = read_text_file(p, what="metadata document", error=MetadataError)
    return check_document(parse_json(text, str(p)), where=str(p))
