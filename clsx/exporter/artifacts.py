"""Output files of the exporter: names, refusal to clobber, atomic writes, the result record.

Every ONNX file is written whole through a temporary file in the target folder and renamed into
place, followed by its sidecar ``<file>.json``; if anything fails on the way, neither is left behind.
Existing outputs are refused unless ``force`` is given. A graph that fails verification is still
written, under a name that says so (``model.FAILED.onnx``), so it can be inspected.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from clsx.errors import ClsxError, OutputExistsError
from clsx.metadata import atomic_write_bytes, embed_in_onnx, sidecar_path, write_sidecar

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

#: protobuf cannot serialize a message of 2 GiB or more; clsx writes single-file ONNX only.
MAX_ONNX_BYTES = 2**31 - 1
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
            "seconds": round(self.seconds, 3),
            "verification": self.verification,
            "fp32_verification": self.fp32_verification,
        }


def safe_stem(name: str) -> str:
    """A model name as a file stem: ``usernets.cifar:build`` -> ``usernets.cifar_build``."""
    stem = re.sub(r"[:/\\\s]+", "_", name.strip()).strip("._") or "model"
    return stem


def default_output(name: str, folder: Path | None = None) -> Path:
    """``<model name>.onnx`` in ``folder`` (default: the current directory)."""
    return (folder if folder is not None else Path.cwd()) / f"{safe_stem(name)}.onnx"


def resolve_output(out: str | Path | None, name: str) -> Path:
    """The FP32 output path: ``out`` when it names a ``.onnx`` file, ``out/<name>.onnx`` when it is an
    existing folder, ``./<name>.onnx`` when not given."""
    if out is None:
        return default_output(name)
    p = Path(out).expanduser()
    if p.is_dir():
        return default_output(name, p)
    if p.suffix.lower() != ".onnx":
        raise ExportError(f"cannot write {p}: the output must be a .onnx file or an existing folder")
    return p


def _stem_of(path: Path) -> str:
    name = path.name
    return name[: -len(".onnx")] if name.lower().endswith(".onnx") else name


def fp16_path_for(fp32_path: Path) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx`` in the same folder."""
    return fp32_path.with_name(_stem_of(fp32_path) + FP16_SUFFIX)


def failed_path_for(path: Path) -> Path:
    """``model.onnx`` -> ``model.FAILED.onnx``: where a graph that failed verification is kept."""
    return path.with_name(f"{_stem_of(path)}.{FAILED_TAG}.onnx")


def check_writable(path: Path) -> None:
    """Fail early, before any work, when ``path``'s folder cannot take a new file."""
    folder = path.parent
    if not folder.exists():
        raise ExportError(f"cannot write {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: {folder} is not a folder")
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a folder")
    try:  # os.access lies for root and on read-only mounts: try for real
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def refuse_existing(paths: list[Path], *, force: bool) -> None:
    """Raise :class:`OutputExistsError` for the first existing output unless ``force``."""
    for p in paths:
        if p.exists() and not force:
            raise OutputExistsError(f"{p} already exists; pass --force to overwrite it")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize(model: "onnx.ModelProto") -> bytes:
    """The model as one self-contained protobuf (no external data); refuses 2 GiB and more."""
    try:
        return model.SerializeToString()
    except ValueError as exc:  # protobuf: "Message onnx.ModelProto exceeds maximum protobuf size of 2GB"
        raise ExportError(
            f"the graph is above the 2 GiB limit of a single-file ONNX model ({exc}); "
            "clsx writes self-contained files only, so export a smaller variant"
        ) from None


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
    from clsx.metadata import ONNX_METADATA_KEY

    props = model.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == ONNX_METADATA_KEY:
            del props[i]


def _honour_umask(path: Path) -> None:
    """Temporary files are created 0600; give the final file the permissions a plain open() would."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_onnx(path: Path, model_bytes: bytes, doc: Mapping[str, Any]) -> tuple[bytes, str]:
    """Write ``model_bytes`` with ``doc`` embedded to ``path`` atomically, then the sidecar.
    Returns (file bytes, sha256). If the sidecar cannot be written the model file is removed again,
    so the pair is all or nothing."""
    data = with_metadata(model_bytes, doc)
    atomic_write_bytes(path, data)
    try:
        _honour_umask(path)
        side = write_sidecar(path, doc)
        _honour_umask(side)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return data, sha256_bytes(data)


def remove_quietly(*paths: Path) -> None:
    """Delete outputs (and their sidecars) left by an earlier run, e.g. a stale ``.FAILED.onnx``."""
    for p in paths:
        for q in (p, sidecar_path(p)):
            try:
                q.unlink(missing_ok=True)
            except OSError:  # pragma: no cover - best effort
                pass
