"""The files that make up one artifact on disk, checked before anything reads them.

A clsx artifact can be more than one file: the dynamo exporter may keep large weights in an external
``<model>.onnx.data`` file, and TensorRT plans carry their metadata in a ``<plan>.json`` sidecar.
Triton repositories and Ray workers on other machines need all of them.

Every file an artifact *names* (an ONNX graph's external data, its sidecar, a file its metadata
document names) must lie inside the artifact's folder: the folder of the path as given, where ONNX
Runtime, ``onnx.load`` and TensorRT's parser look. Names are refused when they are absolute, contain
``..`` or a NUL, or when a symbolic link on the way leaves the folder. Links are followed by
:func:`inside` itself, one component at a time, and only while they stay inside: a target outside
the folder is never looked at, so the refusal is the same line whether it exists or not. Named files
must be regular files (a folder, FIFO or device is refused before anything opens it).

Readers go through this module before touching the graph:

- :func:`checked_onnx` / :func:`load_checked_onnx`: an ONNX graph's external data files (every
  ``TensorProto`` in the model: initializers, Constant attributes, sparse tensors, subgraphs,
  functions, training info), each inside the folder, present and long enough;
- :func:`checked_sidecar`: the ``<file>.json`` beside an artifact (checkpoints included);
- :func:`check_document_names`: files a metadata document names (``external_data.file``);
- :func:`open_artifact` / :func:`artifact_files`: all of the above for copying or shipping.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from clsx.core.errors import ClsxError

if TYPE_CHECKING:
    import onnx

#: ONNX Runtime reads "external data" at this location from a raw memory address (its offset): never from a file.
ORT_MEMORY_ADDRESS_TAG = "*/_ORT_MEM_ADDR_/*"
_MAX_LINKS = 40  # as the kernel's ELOOP limit
_NAME_SHOWN = 120  # characters of a hostile name repeated in a message


class ArtifactError(ClsxError):
    """An artifact that names a file outside its folder, or a named file that is not a plain file."""


def sidecar_path(path: str | Path) -> Path:
    """``<file>.json`` beside ``path`` (the metadata sidecar; also re-exported by :mod:`clsx.core.metadata`)."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def _shown(name: str) -> str:
    text = repr(name)
    return text if len(text) <= _NAME_SHOWN else text[: _NAME_SHOWN - 1] + "…'"


def _escapes(artifact: Path, what: str, name: str) -> ArtifactError:
    """The one refusal for every way out (absolute, ``..``, a link leaving the folder): it depends on
    the name only, never on what lies outside."""
    return ArtifactError(
        f"{artifact}: {what} {_shown(name)} is outside the artifact's folder {artifact.parent}; refused "
        "(an artifact may name only files inside its own folder)"
    )


def _resolve_inside(folder: Path, name: str) -> str | None:
    """The real path of ``folder/name``, or None when resolving it leaves ``folder``.

    Components are looked at one by one with ``lstat`` (never opened); a symbolic link is read and its
    target resolved from where it stands; a target outside the folder ends the walk at once, unread.
    A component that does not exist ends the lookups: the rest is a name that is not there (inside).
    """
    root = os.path.realpath(folder)
    spellings = [root]  # an absolute link target may spell the folder as given or as resolved
    given = os.path.abspath(folder)
    if given != root and os.path.realpath(given) == root:
        spellings.append(given)
    done: list[str] = []
    todo = list(reversed(name.split("/")))
    links = 0
    missing = False
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return None
            done.pop()
            continue
        if missing:
            done.append(part)
            continue
        here = os.path.join(root, *done, part)
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            missing = True
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), here)
        target = os.readlink(here)
        if target.startswith("/"):
            rest = next((target[len(s):] for s in spellings if target == s or target.startswith(s + "/")), None)
            if rest is None:
                return None
            done = []
            target = rest
        todo.extend(reversed(target.split("/")))
    return os.path.join(root, *done)


def inside(artifact: str | Path, name: str, *, what: str, must_exist: bool = True) -> Path:
    """``<artifact's folder>/name`` once it is known to resolve inside that folder to a regular file.

    ``what`` names the file in messages (``external data file``, ``sidecar`` ...). Absolute names,
    ``..``, NUL bytes and links out of the folder are one :class:`ArtifactError` line, the same whether
    or not anything exists outside. With ``must_exist`` a missing file is :class:`FileNotFoundError`
    (the caller words it); anything there that is not a regular file is an :class:`ArtifactError`.
    The path returned is the lexical one (folder / name), which is what readers open.
    """
    art = Path(artifact)
    if not isinstance(name, str) or not name or "\0" in name:
        raise ArtifactError(f"{art}: {what} {_shown(str(name))} is not a usable file name; refused")
    if name.startswith("/") or ".." in name.split("/") or (os.sep != "/" and (os.path.isabs(name) or ".." in Path(name).parts)):
        raise _escapes(art, what, name)
    try:
        real = _resolve_inside(art.parent, name)
    except OSError as exc:  # ELOOP, ENAMETOOLONG, EACCES on a folder inside
        raise ArtifactError(f"{art}: {what} {_shown(name)}: {exc.strerror or exc}; refused") from None
    if real is None:
        raise _escapes(art, what, name)
    path = art.parent / name
    try:
        st = os.stat(real)  # inside the folder, every link already resolved
    except (FileNotFoundError, NotADirectoryError):
        if must_exist:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path)) from None
        return path
    except OSError as exc:
        raise ArtifactError(f"{art}: {what} {_shown(name)}: {exc.strerror or exc}; refused") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{art}: {what} {_shown(name)} is {_kind(st.st_mode)}, not a regular file; refused")
    return path


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def checked_file(path: str | Path, *, what: str = "artifact") -> Path:
    """The artifact file itself (the user named it: a link to it is followed): it must be a regular
    file, so that a FIFO or a device never blocks a reader."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ArtifactError(f"{p}: no such file") from None
    except OSError as exc:
        raise ArtifactError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{p}: the {what} is {_kind(st.st_mode)}, not a regular file")
    return p


#: The largest text file clsx reads as a document (metadata sidecars, Triton's clsx.json, calibration
#: caches, label files): 64 MiB, some 50 times a document with a million 30-character labels. A larger
#: file is refused before it is read, not loaded into memory whole.
MAX_DOCUMENT_BYTES = 64 << 20


def read_text_file(path: str | Path, *, what: str, limit: int = MAX_DOCUMENT_BYTES,
                   error: type[ClsxError] = ArtifactError) -> str:
    """The UTF-8 text of a document file: only a regular file (a FIFO, socket or device is refused at
    once rather than blocking: opened non-blocking and checked with fstat on the descriptor itself), of
    at most ``limit`` bytes. Any problem is one ``error`` line naming ``what`` and the file."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} {p}: no such file") from None
    except OSError as exc:
        raise error(f"{what} {p}: cannot read it ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {p}: {_kind(st.st_mode)}, not a regular file; refused")
        raise error(f"{what} {p}: {st.st_size} bytes, more than the {limit >> 20} MiB a document may have; refused")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise error(f"{what} {p}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:  # grew after the fstat
        raise error(f"{what} {p}: more than the {limit >> 20} MiB a document may have; refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def checked_sidecar(path: str | Path) -> Path | None:
    """The ``<file>.json`` beside ``path`` when there is one, checked like any named file (a link
    leaving the folder is refused, a folder or FIFO named like it too); None when there is none."""
    p = Path(path)
    side = sidecar_path(p)
    try:
        os.lstat(side)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ArtifactError(f"{p}: sidecar {side.name!r}: {exc.strerror or exc}; refused") from None
    try:
        return inside(p, side.name, what="sidecar")
    except FileNotFoundError:  # a link inside the folder to nothing: no sidecar
        return None


def read_sidecar_text(path: str | Path) -> tuple[Path, str] | None:
    """(sidecar path, its text) for the checked sidecar of ``path``; None when there is none."""
    side = checked_sidecar(path)
    if side is None:
        return None
    return side, read_text_file(side, what="sidecar")


#: (section, key) of metadata-document entries that name a file beside the artifact.
DOCUMENT_FILE_KEYS = (("external_data", "file"),)


def check_document_names(path: str | Path, doc: Mapping[str, Any]) -> dict[str, Path]:
    """Files ``doc`` names (``external_data.file`` ...), each checked to lie inside ``path``'s folder
    (they need not exist: a plan's document names its ONNX graph's data file). ``{"section.key": path}``."""
    found: dict[str, Path] = {}
    for section, key in DOCUMENT_FILE_KEYS:
        entry = doc.get(section)
        if not isinstance(entry, Mapping) or entry.get(key) is None:
            continue
        name = entry[key]
        if not isinstance(name, str):
            raise ArtifactError(f"{path}: metadata {section}.{key} is {type(name).__name__}, not a file name; refused")
        found[f"{section}.{key}"] = inside(path, name, what=f"file named by metadata {section}.{key}", must_exist=False)
    return found


# ---------------------------------------------------------------------------------------------
# ONNX graphs


def load_checked_onnx(path: str | Path) -> "tuple[onnx.ModelProto, list[Path]]":
    """The graph (its external weights not loaded) and its external data files, in first-use order,
    after every check of the module docstring; one :class:`ClsxError` line otherwise. Readers call
    this (or :func:`checked_onnx`) with the path they are about to hand to ONNX Runtime, TensorRT or
    ``onnx.load``."""
    import onnx

    p = checked_file(path, what="ONNX graph")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ClsxError(f"{p}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    found: list[Path] = []
    sizes: dict[Path, int] = {}
    for tensor in _all_tensors(model):
        entries = {e.key: e.value for e in tensor.external_data}
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not entries:
            continue
        location = entries.get("location")
        if not location:
            raise ArtifactError(f"{p}: tensor {_shown(tensor.name)} keeps its data externally but names no file; refused")
        if location == ORT_MEMORY_ADDRESS_TAG:
            raise ArtifactError(f"{p}: tensor {_shown(tensor.name)} asks for its data at a raw memory address "
                                f"({location!r}), not in a file; refused")
        try:
            data = inside(p, location, what="external data file")
        except FileNotFoundError:
            raise _missing(p, location) from None
        try:
            offset, length = int(entries.get("offset") or 0), int(entries.get("length") or 0)
        except ValueError:
            raise ArtifactError(f"{p}: tensor {_shown(tensor.name)} has a non-numeric external data offset or length; refused") from None
        if offset < 0 or length < 0:
            raise ArtifactError(f"{p}: tensor {_shown(tensor.name)} has a negative external data offset or length; refused")
        if data not in sizes:
            sizes[data] = os.stat(data).st_size
            found.append(data)
        if sizes[data] < offset + length:
            raise _missing(p, location)
    return model, found


def checked_onnx(path: str | Path) -> list[Path]:
    """:func:`load_checked_onnx` without the graph: the external data files, checked."""
    return load_checked_onnx(path)[1]


def _missing(path: Path, location: str) -> ArtifactError:
    return ArtifactError(
        f"{path}: its weights live in external data file {_shown(location)}, which is missing or truncated in "
        f"{path.parent}; keep the .onnx and its data file together in one folder"
    )


def onnx_external_data(path: Path) -> list[Path]:
    """External data files an ONNX graph refers to (inside its folder), in first-use order."""
    return checked_onnx(path)


def _all_tensors(message: Any) -> Iterator[Any]:
    """Every ``TensorProto`` anywhere in an ONNX message, in document order: initializers and sparse
    initializers, Constant and other attribute tensors, If/Loop/Scan bodies, functions, training info.
    (Walking the protobuf generically leaves no place a tensor with external data could hide.)"""
    import onnx
    from google.protobuf.descriptor import FieldDescriptor

    stack = [message]
    while stack:
        msg = stack.pop()
        if isinstance(msg, onnx.TensorProto):
            yield msg
            continue
        children: list[Any] = []
        for field, value in msg.ListFields():
            if field.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            if hasattr(value, "ListFields"):
                children.append(value)
            else:  # a repeated message field (maps do not occur in onnx.proto)
                children.extend(value)
        stack.extend(reversed(children))


# ---------------------------------------------------------------------------------------------
# Whole artifacts


@dataclass(frozen=True)
class Artifact:
    """An artifact file with every file it names, all checked (:func:`open_artifact`)."""

    path: Path
    external: tuple[Path, ...] = ()  # ONNX external data files
    sidecar: Path | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent

    def files(self, *, sidecar: bool = True) -> list[Path]:
        """The artifact itself first, then its external data, then (``sidecar``) its sidecar."""
        return [self.path, *self.external, *([self.sidecar] if sidecar and self.sidecar is not None else [])]


def open_artifact(path: str | Path) -> Artifact:
    """Check ``path`` and every file it names (see the module docstring)."""
    p = checked_file(path)
    external = tuple(checked_onnx(p)) if p.suffix.lower() == ".onnx" else ()
    return Artifact(path=p, external=external, sidecar=checked_sidecar(p))


def artifact_files(path: str | Path, *, sidecar: bool = True) -> list[Path]:
    """The artifact itself first, then its ONNX external data files and (``sidecar``) its sidecar JSON,
    every one checked by :func:`open_artifact`."""
    return open_artifact(path).files(sidecar=sidecar)
