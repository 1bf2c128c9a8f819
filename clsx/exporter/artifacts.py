"""Output files of the exporter: names, refusal to clobber, atomic writes, the result record.

Every ONNX file is written whole through a temporary file in the target folder and renamed into
place, followed by its sidecar ``<file>.json``; if anything fails on the way, none is left behind.
Existing outputs are refused unless ``force`` is given. A graph that fails verification is still
written, under a name that says so (``model.FAILED.onnx``), so it can be inspected.

**Size.** A graph below :data:`SINGLE_FILE_LIMIT` (2 GiB, protobuf's limit for one message) is one
self-contained file. A larger one (torchvision's vit_h_14, regnet_y_128gf) cannot be: it is written
as ``model.onnx`` (the graph, with the clsx metadata in ``metadata_props``, readable without the
weights) plus ONE data file ``model.onnx.data`` beside it holding every weight (ONNX external data;
the graph names the data file relative to its own folder, so the two files travel together).
:class:`StagedOnnx` holds a graph between export and writing: bytes in memory, or for external data
a temporary folder beside the output where the checker and ONNX Runtime load it by path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from clsx.core import files
from clsx.core.errors import ClsxError
from clsx.core.files import OutputSet, sha256_bytes, sha256_file, temp_folder
from clsx.core.metadata import dumps, embed_in_onnx, sidecar_path

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

#: protobuf cannot serialize a message of 2 GiB or more: graphs at least this large keep their weights
#: in one ``<file>.data`` beside the ``.onnx`` (a module constant so tests can lower it)
SINGLE_FILE_LIMIT = 2**31 - 1
DATA_SUFFIX = ".data"
FP16_SUFFIX = ".fp16.onnx"
FAILED_TAG = "FAILED"


class ExportError(ClsxError):
    """The model cannot be exported as asked (opset, output path, unsupported outputs, size)."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    ``path`` is the final artifact (the FP16 file when FP16 was asked for); ``fp32_path`` the FP32
    graph it came from; ``metadata`` the clsx document embedded in ``path``; ``exporter`` the torch
    exporter that produced the graph (``dynamo`` or ``torchscript``); ``verification`` the figures
    of the last check (``None`` when verification was skipped); ``seconds`` the wall time.
    """

    path: Path
    fp32_path: Path | None
    metadata: dict[str, Any]
    exporter: str
    verification: dict[str, Any] | None
    seconds: float
    fp16_path: Path | None = None
    sha256: str = ""
    fp32_verification: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (``clsx export --json``)."""
        return {
            "path": str(self.path),
            "fp32_path": str(self.fp32_path) if self.fp32_path else None,
            "fp16_path": str(self.fp16_path) if self.fp16_path else None,
            "precision": self.metadata.get("precision"),
            "exporter": self.exporter,
            "sha256": self.sha256,
            "external_data": self.metadata.get("external_data"),  # the weights file of a graph of 2 GiB or more
            "seconds": round(self.seconds, 3),
            "verification": self.verification,
            "fp32_verification": self.fp32_verification,
        }


def safe_stem(name: str) -> str:
    """A model name as a file stem: ``usernets.cifar:build`` -> ``usernets.cifar_build``."""
    stem = re.sub(r"[:/\\\s]+", "_", name.strip()).strip("._") or "model"
    return stem


def default_output(name: str, folder: Path | None = None) -> Path:
    """``<model name>.onnx`` in ``folder`` (default: the current directory, as a relative path: the
    name alone, which is how commands print it)."""
    return (folder if folder is not None else Path()) / f"{safe_stem(name)}.onnx"


def resolve_output(out: str | Path | None, name: str) -> Path:
    """The FP32 output path: ``out`` when it names a ``.onnx`` file, ``out/<name>.onnx`` when it is an
    existing folder or a string ending in ``/`` (a folder, created when written), ``<name>.onnx`` in
    the current directory when not given."""
    if out is None:
        return default_output(name)
    folder = files.names_folder(out)
    p = Path(out).expanduser()
    if folder or p.is_dir():
        return default_output(name, p)
    if p.suffix.lower() != ".onnx":
        raise ExportError(f"cannot write {p}: the output must be a .onnx file or a folder "
                          f"(an existing one, or end it with / to create it: {out}/)")
    return p


def _stem_of(path: Path) -> str:
    name = path.name
    return name[: -len(".onnx")] if name.lower().endswith(".onnx") else name


def fp16_path_for(fp32_path: Path) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx`` in the same folder."""
    return fp32_path.with_name(_stem_of(fp32_path) + FP16_SUFFIX)


def data_path_for(path: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.data``: where the weights of a graph of 2 GiB or more live."""
    return path.with_name(path.name + DATA_SUFFIX)


def outputs_of(path: Path) -> list[Path]:
    """Every file an ONNX output may occupy: the graph and its external data file."""
    return [path, data_path_for(path)]


def failed_path_for(path: Path) -> Path:
    """``model.onnx`` -> ``model.FAILED.onnx``: where a graph that failed verification is kept."""
    return path.with_name(f"{_stem_of(path)}.{FAILED_TAG}.onnx")


def onnx_outputs(paths: list[Path]) -> list[Path]:
    """Every file the ONNX outputs ``paths`` may occupy: each graph and its external data file."""
    return [q for path in paths for q in (outputs_of(path) if path.suffix.lower() == ".onnx" else [path])]


def refuse_existing(paths: list[Path], *, force: bool) -> None:
    """:func:`clsx.core.files.refuse_existing` over the outputs and their possible ``<path>.data``."""
    files.refuse_existing(onnx_outputs(paths), force=force)


def needs_external_data(model: "onnx.ModelProto") -> bool:
    """True when ``model`` (weights inside) is too large for one protobuf file (:data:`SINGLE_FILE_LIMIT`)."""
    try:
        return model.ByteSize() >= SINGLE_FILE_LIMIT
    except Exception:  # protobuf refuses to even size a message beyond 2 GiB
        return True


def has_external_data(model: "onnx.ModelProto") -> bool:
    """True when some initializer of ``model`` lives in an external file."""
    return any(t.data_location == 1 for t in model.graph.initializer)  # onnx.TensorProto.EXTERNAL


def serialize(model: "onnx.ModelProto") -> bytes:
    """The model as one self-contained protobuf (no external data); callers stage larger graphs
    through :func:`stage` instead."""
    try:
        return model.SerializeToString()
    except Exception as exc:  # protobuf: "Failed to serialize proto" / "exceeds maximum protobuf size of 2GB"
        raise ExportError(f"the graph cannot be serialized as one protobuf ({exc}); it is above 2 GiB") from None


STAGED_GRAPH, STAGED_DATA = "model.onnx", "model.onnx" + DATA_SUFFIX


@dataclass
class StagedOnnx:
    """A graph serialized once for onnx.checker, ONNX Runtime and the output file.

    Self-contained (below :data:`SINGLE_FILE_LIMIT`): ``data`` holds its bytes. External data:
    ``folder`` (a temporary folder beside the output) holds ``model.onnx`` (the graph, no clsx entry)
    and ``model.onnx.data`` (every weight); ``graph`` is the weightless ModelProto.
    """

    data: bytes | None = None
    folder: Path | None = None
    graph: "onnx.ModelProto | None" = None
    weights_bytes: int = 0
    weights_sha256: str = ""

    @property
    def external(self) -> bool:
        return self.folder is not None

    @property
    def source(self) -> "bytes | str":
        """What onnx.checker and ONNX Runtime take: the bytes, or the staged graph's path."""
        if self.folder is not None:
            return str(self.folder / STAGED_GRAPH)
        assert self.data is not None
        return self.data

    def sections(self) -> dict[str, Any]:
        """The metadata section describing the weights file (none for a self-contained graph)."""
        if not self.external:
            return {}
        return {"external_data": {"file": STAGED_DATA, "bytes": self.weights_bytes, "sha256": self.weights_sha256}}

    def describe(self, path: Path) -> str:
        """How the export log line describes the written file(s)."""
        if not self.external:
            return f"{len(self.data or b'') / 1e6:.1f} MB"
        return (f"the graph; its weights are external, in {data_path_for(path).name} ({self.weights_bytes / 1e6:.1f} MB), "
                "as the graph is too large for one protobuf file: the two files travel together")


def stage(model: "onnx.ModelProto", folder: Path) -> StagedOnnx:
    """Serialize ``model`` for checking, running and writing. ``folder`` is an empty temporary folder
    beside the output; it is used only for a graph that needs external data, and a graph whose
    weights already sit there as ``model.onnx.data`` (the dynamo exporter's large-model path) is
    taken as is. A large ``model`` passed in with its weights loses them to the data file."""
    import onnx

    if not has_external_data(model):
        if not needs_external_data(model):
            return StagedOnnx(data=serialize(model))
        onnx.save_model(model, str(folder / STAGED_GRAPH), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=STAGED_DATA, size_threshold=1024, convert_attribute=False)
    else:
        _relocate(model, STAGED_DATA)
        (folder / STAGED_GRAPH).write_bytes(serialize(model))  # inside a private temporary folder
    data = folder / STAGED_DATA
    if not data.is_file():  # every tensor below the 1 KiB threshold: cannot happen for a 2 GiB graph
        raise ExportError("the external-data export wrote no weights file")
    return StagedOnnx(folder=folder, graph=model, weights_bytes=data.stat().st_size, weights_sha256=sha256_file(data))


def _relocate(model: "onnx.ModelProto", location: str) -> None:
    """Point every external tensor of ``model`` at ``location`` (all weights live in one file)."""
    for t in model.graph.initializer:
        if t.data_location == 1:
            for entry in t.external_data:
                if entry.key == "location":
                    entry.value = location


def staging_folder(near: Path):
    """A temporary folder beside ``near`` (same file system: the weights file is renamed, not copied),
    removed with whatever is left in it."""
    return temp_folder(near)


@contextlib.contextmanager
def weights_outside(model: "onnx.ModelProto", folder: Path | None = None) -> Iterator[None]:
    """Within the block, every large initializer of ``model`` is marked as external data: written to
    ``folder/model.onnx.data`` when ``folder`` is given (so ONNX Runtime can load the graph by path),
    only set aside otherwise (shape inference needs shapes, not values). The weights are restored
    afterwards; the model is never copied whole, so a graph of 2 GiB or more costs no second copy."""
    held: list[tuple[Any, bytes]] = []
    data = open(folder / STAGED_DATA, "wb") if folder is not None else None
    try:
        offset = 0
        for t in model.graph.initializer:
            if t.data_location == 1 or len(t.raw_data) <= 1024:
                continue
            raw = t.raw_data
            held.append((t, raw))
            t.ClearField("raw_data")
            t.data_location = 1
            for key, value in (("location", STAGED_DATA if data else "set-aside"), ("offset", str(offset)), ("length", str(len(raw)))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            if data is not None:
                data.write(raw)
            offset += len(raw)
        if data is not None:
            data.close()
        yield
    finally:
        if data is not None:
            data.close()
        for t, raw in held:
            t.data_location = 0
            del t.external_data[:]
            t.raw_data = raw


@contextlib.contextmanager
def runnable(model: "onnx.ModelProto") -> Iterator["bytes | str"]:
    """``model`` as ONNX Runtime takes it: bytes, or for a graph of 2 GiB or more a path in a
    temporary folder (weights written beside it). ``model`` is unchanged afterwards; create the
    session inside the block."""
    if not needs_external_data(model):
        yield serialize(model)
        return
    with tempfile.TemporaryDirectory(prefix="clsx-ort-") as tmp:
        with weights_outside(model, Path(tmp)):
            (Path(tmp) / STAGED_GRAPH).write_bytes(serialize(model))
        yield str(Path(tmp) / STAGED_GRAPH)


def infer_shapes(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """onnx's shape inference, also for graphs of 2 GiB or more (it serializes the model internally):
    large weights are set aside for the duration (:func:`weights_outside`). Returns the inferred
    model, whose value_info the caller copies (its large weights are left out)."""
    import onnx

    if not needs_external_data(model):
        return onnx.shape_inference.infer_shapes(model)
    with weights_outside(model):
        return onnx.shape_inference.infer_shapes(model)


def with_metadata(model_bytes: bytes, doc: Mapping[str, Any]) -> bytes:
    """``model_bytes`` (serialized without a clsx entry) plus ``doc`` in ``metadata_props``.

    Concatenating two serialized protobuf messages is, by the protobuf specification, the same as
    merging them, and repeated fields such as ``metadata_props`` append. So the document is added by
    appending a tiny serialized ModelProto instead of re-serializing hundreds of MB of weights.
    """
    import onnx

    carrier = onnx.ModelProto()
    embed_in_onnx(carrier, doc)
    return model_bytes + carrier.SerializeToString()


def strip_clsx_metadata(model: "onnx.ModelProto") -> None:
    """Drop an older clsx entry (so :func:`with_metadata` never leaves two)."""
    from clsx.core.metadata import ONNX_METADATA_KEY

    props = model.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == ONNX_METADATA_KEY:
            del props[i]


def write_onnx(path: Path, model_bytes: bytes, doc: Mapping[str, Any], *, force: bool = False) -> tuple[bytes, str]:
    """Publish ``model_bytes`` with ``doc`` embedded at ``path`` and the sidecar beside it, together
    (:class:`~clsx.core.files.OutputSet`). Returns (file bytes, sha256). A data file left at
    ``<path>.data`` by an earlier, larger export to the same path (overwritten with --force) is
    removed: it no longer belongs to anything."""
    data = with_metadata(model_bytes, doc)
    side = sidecar_path(path)
    with OutputSet([path, side], force=force) as out:
        out.write_bytes(path, data)
        out.write_text(side, dumps(doc))
    data_path_for(path).unlink(missing_ok=True)
    return data, sha256_bytes(data)


@dataclass(frozen=True)
class Written:
    """What :func:`commit` wrote: the document embedded (with the data file's final name for external
    data), the graph file's sha256 and size, and the file bytes for a self-contained graph."""

    doc: dict[str, Any]
    sha256: str
    nbytes: int
    data: bytes | None


def commit(staged: StagedOnnx, path: Path, doc: Mapping[str, Any], *, force: bool = False) -> Written:
    """Publish a staged graph with ``doc`` at ``path`` (and for external data its weights at
    ``<path>.data``) with its sidecar: all three together, or none."""
    doc = dict(doc)
    if not staged.external:
        assert staged.data is not None
        data, sha = write_onnx(path, staged.data, doc, force=force)
        return Written(doc=doc, sha256=sha, nbytes=len(data), data=data)
    assert staged.folder is not None and staged.graph is not None
    target = data_path_for(path)
    doc["external_data"] = {**doc.get("external_data", {}), "file": target.name}
    _relocate(staged.graph, target.name)
    strip_clsx_metadata(staged.graph)
    embed_in_onnx(staged.graph, doc)
    graph_bytes = serialize(staged.graph)
    side = sidecar_path(path)
    try:
        with OutputSet([path, target, side], force=force) as out:
            os.replace(staged.folder / STAGED_DATA, out.temp(target))  # same folder: a rename, not a copy
            out.write_bytes(path, graph_bytes)
            out.write_text(side, dumps(doc))
    finally:
        _relocate(staged.graph, STAGED_DATA)
    return Written(doc=doc, sha256=sha256_bytes(graph_bytes), nbytes=len(graph_bytes) + staged.weights_bytes, data=None)


def remove_quietly(*paths: Path) -> None:
    """Delete outputs (with their sidecars and data files) left by an earlier run, e.g. a stale ``.FAILED.onnx``."""
    for p in paths:
        for q in (p, sidecar_path(p), data_path_for(p)):
            try:
                q.unlink(missing_ok=True)
            except OSError:  # pragma: no cover - best effort
                pass
