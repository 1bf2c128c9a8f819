"""Writing outputs: exclusive, atomic publishing of file sets, with the user's umask.

Every file clsx writes (graphs, sidecars, plans, CSV, caches, flip lists, Triton folders) goes
through :class:`OutputSet`:

- each output is first written to a temporary file created *exclusively* in the output's own folder
  (:func:`tempfile.mkstemp`: an unpredictable name, ``O_CREAT | O_EXCL``, so a symlink planted
  there is never followed);
- when the whole set is written, it is published: without ``force`` each file is hard-linked to its
  final name, which fails if that name exists at that moment (so two runs racing for one output
  cannot both win: the loser gets one line); with ``force`` it is renamed over the old file;
- if anything fails (disk full, a signal, a lost race), every temporary file is removed and any
  member of the set already published by this run is taken back, so a set is all or nothing;
- published files get ``0o666 & ~umask`` (mkstemp's 0600 is for the temporary only);
- an output's missing folders are created when its first temporary is (``mkdir -p``, ``0o777 & ~umask``;
  they stay if the run fails later). ``-o out/`` (a trailing ``/``, :func:`names_folder`) means "into
  this folder": :func:`output_path` puts the command's default file name in it.

The early checks (:func:`refuse_existing`, :func:`check_writable`) only fail fast, before hours of
work (a missing folder passes when its nearest existing ancestor is a writable folder); publishing is
what guarantees nothing is clobbered.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

from clsx.core import interrupts
from clsx.core.errors import ClsxError, OutputExistsError


class OutputError(ClsxError):
    """An output could not be written (disk full, no permission, a folder in the way ...)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException | str, *, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (colour codes removed, at most ``limit``
    characters); the exception's type name when it has no message. For one-line errors."""
    text = _ANSI.sub("", str(exc)).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_exception(exc: BaseException) -> str:
    """``Type: first line``, plus ``(cause: Type: first line)`` of the root cause where there is one:
    library errors (torch's exporter, AOTInductor) say which step failed, their cause says why."""

    def one(e: BaseException) -> str:
        line = first_line(e)
        return f"{type(e).__name__}: {line}" if line != type(e).__name__ else line

    root, seen = exc, {id(exc)}
    while root.__cause__ is not None and id(root.__cause__) not in seen:
        root = root.__cause__
        seen.add(id(root))
    return one(exc) if root is exc else f"{one(exc)} (cause: {one(root)})"


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's contents, read in 16 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file."""
    return 0o666 & ~umask()


def exists_message(path: Path) -> str:
    return f"{path} already exists; pass --force to overwrite it"


def refuse_existing(paths: Iterable[str | os.PathLike], *, force: bool) -> None:
    """Fail fast, before any work, when an output exists and ``force`` is not given. (Publishing
    checks again at the end: this is only so nobody waits for a run that cannot publish.)"""
    for p in map(Path, paths):
        if p.is_dir() and not p.is_symlink():
            raise OutputError(f"cannot write {p}: it is a folder")
        _refuse_special(p)
        if not force and os.path.lexists(p):
            raise OutputExistsError(exists_message(p))


_SPECIAL = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
            (stat.S_ISSOCK, "a socket"))


def _refuse_special(p: Path) -> None:
    """An output is published as a whole new file in its place; in place of a device or a pipe that
    would replace the node itself (``-o /dev/null --force`` run as root: /dev/null a regular file)."""
    try:
        mode = os.lstat(p).st_mode
    except OSError:
        return
    for test, what in _SPECIAL:
        if test(mode):
            raise OutputError(f"cannot write {p}: it is {what}, not a file; clsx publishes whole files"
                              " (for infer rows, leave out -o: they go to stdout)")


def names_folder(out: str | os.PathLike) -> bool:
    """True when ``out`` is written as a folder: a string ending in a path separator (``-o out/``).
    (A :class:`~pathlib.Path` drops the trailing ``/``, so the CLI passes ``-o`` values as strings.)"""
    text = os.fspath(out)
    seps = tuple(s for s in (os.sep, os.altsep) if s)
    return isinstance(text, str) and len(text) > 1 and text.endswith(seps)


def output_path(out: str | os.PathLike, default_name: str) -> Path:
    """The file an ``-o``/``--output`` value stands for: ``out/default_name`` when ``out`` is an
    existing folder or ends in ``/`` (a folder, created when the output is written), else ``out``."""
    p = Path(out)
    if names_folder(out) or p.is_dir():
        return p / default_name
    return p


def refuse_folder_path(out: str | os.PathLike, *, what: str = "--output", example: str = "rows.csv") -> None:
    """For outputs without a default file name (``clsx infer -o``, ``--flips``): ``out/`` is refused
    with one line instead of becoming a file named ``out``."""
    if names_folder(out):
        raise OutputError(f"{what} {out} names a folder; give the file to write in it, e.g. {Path(out) / example}")


def _existing_ancestor(folder: Path) -> Path:
    """The nearest of ``folder`` and its ancestors that exists (as anything, a broken link included)."""
    while not os.path.lexists(folder) and folder.parent != folder:
        folder = folder.parent
    return folder


def _check_folder(folder: Path, name: str, error: type[ClsxError]) -> Path:
    """The folder a new entry of ``folder`` would be probed in: ``folder`` itself, or (when it does not
    exist yet, and will be created) its nearest existing ancestor, which must be a folder."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        what = "a broken link" if base.is_symlink() and not base.exists() else "not a folder"
        raise error(f"cannot write {name}: {base} is {what}")
    return base


def _probe(folder: Path, prefix: str, name: str, error: type[ClsxError]) -> None:
    with interrupts.held():  # (the probe is gone before a signal is raised)
        try:  # os.access lies for root and on read-only mounts: try for real
            fd, probe = tempfile.mkstemp(prefix=prefix, suffix=".probe", dir=folder)
        except OSError as exc:
            raise error(f"cannot write {name}: {exc.strerror or exc}") from None
        os.close(fd)
        os.unlink(probe)


def check_writable(path: str | os.PathLike, *, what: str = "", error: type[ClsxError] = OutputError) -> None:
    """Fail fast, before any work, when ``path``'s folder cannot take a new file. A folder that does not
    exist yet is fine when it can be created (its nearest existing ancestor is a writable folder): it is
    created, with the umask's permissions, when the output is written (:func:`make_folders`). ``what``
    names the output in the message (``cannot write the timing cache PATH: ...``); ``error`` is the
    class raised."""
    p = Path(path)
    name = f"{what} {p}" if what else str(p)
    base = _check_folder(p.parent, name, error)
    if p.is_dir():
        raise error(f"cannot write {name}: it is a folder")
    _probe(base, f".{p.name}.", name, error)


def check_writable_folder(folder: str | os.PathLike, *, what: str = "", error: type[ClsxError] = OutputError) -> None:
    """Fail fast when ``folder`` cannot be used (or created) as an output folder."""
    p = Path(folder)
    name = f"{what} {p}" if what else str(p)
    if os.path.lexists(p) and not p.is_dir():
        raise error(f"cannot write {name}: it exists and is not a folder")
    _probe(_check_folder(p, name, error), f".{p.name or 'out'}.", name, error)


def make_folders(folder: str | os.PathLike, *, output: str | os.PathLike | None = None) -> None:
    """Create ``folder`` and its missing parents (``mkdir -p``; each gets ``0o777 & ~umask``); the error
    names ``output``, the file the folder is made for, when given. A folder made for an output stays,
    even when the run fails later."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        where = f"cannot write {output}: " if output is not None else ""
        raise OutputError(f"{where}cannot create folder {folder}: {exc.strerror or first_line(exc)}") from None


def write_error(path: Path, exc: OSError) -> OutputError:
    """``cannot write PATH: No space left on device`` (one line for any write failure)."""
    return OutputError(f"cannot write {path}: {exc.strerror or first_line(exc)}")


class OutputSet:
    """Files written aside and published together (see the module docstring).

    ::

        with OutputSet([plan, sidecar], force=force) as out:
            out.write_bytes(plan, data)
            out.write_text(sidecar, json_text)
        # both published here, or neither

    ``temp(path)`` gives the temporary's path for libraries that write by file name (``onnx.save``);
    ``open(path)`` a file object. A member never written is not published. An :class:`OSError`
    while writing or publishing becomes one :class:`OutputError` line naming the file.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *, force: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.force = force
        self._temps: dict[Path, Path] = {}
        self._published: list[Path] = []

    # -- writing ---------------------------------------------------------------------------------

    def _member(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        if p not in self.paths:
            raise ValueError(f"{p} is not an output of this set ({', '.join(map(str, self.paths))})")
        return p

    def temp(self, path: str | os.PathLike) -> Path:
        """The temporary file standing for ``path`` until publishing (created empty, exclusively)."""
        p = self._member(path)
        if p not in self._temps:
            make_folders(p.parent, output=p)
            with interrupts.held():  # (a signal between creating and recording it would leave it behind)
                try:
                    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
                except OSError as exc:
                    raise write_error(p, exc) from None
                self._temps[p] = Path(tmp)
                os.close(fd)
        return self._temps[p]

    def open(self, path: str | os.PathLike, mode: str = "wb", **kw: Any) -> IO[Any]:
        if "w" not in mode:
            raise ValueError("an output is opened for writing")
        return open(self.temp(path), mode, **kw)

    def write_bytes(self, path: str | os.PathLike, data: bytes | memoryview) -> None:
        p = self._member(path)
        try:
            with self.open(p, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise write_error(p, exc) from None

    def write_text(self, path: str | os.PathLike, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    # -- publishing ------------------------------------------------------------------------------

    def publish(self) -> list[Path]:
        """Move every written member into place (exclusively unless ``force``); all or nothing."""
        mode = public_mode()
        try:
            for p, tmp in self._temps.items():
                os.chmod(tmp, mode)
                if self.force:
                    if p.is_dir() and not p.is_symlink():
                        raise OutputError(f"cannot write {p}: it is a folder")
                    _refuse_special(p)  # (appeared meanwhile)
                    os.replace(tmp, p)
                else:
                    _link_exclusive(tmp, p)
                    tmp.unlink()
                self._published.append(p)
        except FileExistsError:
            self.discard(taking_back=True)
            raise OutputExistsError(f"{p} already exists (another run wrote it meanwhile?); pass --force to overwrite it") from None
        except OSError as exc:
            self.discard(taking_back=True)
            raise write_error(p, exc) from None
        except BaseException:
            self.discard(taking_back=True)
            raise
        self._temps.clear()
        return list(self._published)

    def discard(self, *, taking_back: bool = False) -> None:
        """Remove every temporary; with ``taking_back``, also what this set already published. A
        second signal (Ctrl-C twice) waits until this is done."""
        with interrupts.held():
            for tmp in self._temps.values():
                with contextlib.suppress(OSError):
                    tmp.unlink()
            self._temps.clear()
            if taking_back:
                for p in self._published:
                    with contextlib.suppress(OSError):
                        p.unlink()
                self._published.clear()

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard(taking_back=True)


def _link_exclusive(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target``, failing with FileExistsError if it exists at this moment."""
    try:
        os.link(tmp, target, follow_symlinks=False)
        return
    except FileExistsError:
        raise
    except OSError as exc:  # a file system without hard links (FAT, some FUSE mounts)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)  # claim the name
    os.close(fd)
    os.replace(tmp, target)


def write_file(path: str | os.PathLike, data: bytes | str, *, force: bool = False) -> Path:
    """One file, published exclusively (or over the old one with ``force``)."""
    p = Path(path)
    with OutputSet([p], force=force) as out:
        out.write_bytes(p, data.encode("utf-8") if isinstance(data, str) else data)
    return p


@contextlib.contextmanager
def text_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[IO[str]]:
    """A text file (UTF-8, newlines as written) that appears at ``path`` only when the block succeeds."""
    p = Path(path)
    with OutputSet([p], force=force) as out:
        try:
            f = out.open(p, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise write_error(p, exc) from None
        try:
            with f:
                yield f
        except OSError as exc:
            raise write_error(p, exc) from None


@contextlib.contextmanager
def temp_folder(near: str | os.PathLike, *, prefix: str = "") -> Iterator[Path]:
    """A private temporary folder beside ``near`` (same file system, so its files can be renamed
    into place), removed with whatever is left in it, also on an exception or a signal."""
    p = Path(near)
    make_folders(p.parent, output=p)
    folder: Path | None = None
    try:
        with interrupts.held():  # (a signal between creating and recording it would leave it behind)
            try:
                folder = Path(tempfile.mkdtemp(prefix=f".{prefix or p.name}.", suffix=".tmp", dir=p.parent))
            except OSError as exc:
                raise write_error(p, exc) from None
        yield folder
    finally:
        if folder is not None:
            with interrupts.held():
                shutil.rmtree(folder, ignore_errors=True)


class ReaderGone(OutputError):
    """stdout's reader closed the pipe (``clsx infer ... | head``): stop quietly, as Unix tools do."""

    exit_code = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it


class GuardedStream:
    """A text stream (stdout) whose write errors (disk full, a closed pipe, a file-size limit) become
    one :class:`OutputError` line naming it, instead of a traceback."""

    def __init__(self, stream: IO[str], name: str = "stdout") -> None:
        self._stream, self.name = stream, name

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> OutputError:
        """The error to raise; the stream's descriptor now points at /dev/null, so what is still
        buffered (flushed again at exit) cannot fail a second time."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        if exc.errno == errno.EPIPE:
            return ReaderGone(f"{self.name} was closed by its reader")
        return OutputError(f"cannot write to {self.name}: {exc.strerror or first_line(exc)}")


@contextlib.contextmanager
def data_stdout() -> Iterator[IO[str]]:
    """The real stdout as a text stream for data, while file descriptor 1 (and with it ``sys.stdout``)
    points at stderr: libraries that print (Ray's driver echoes worker errors on stdout) cannot mix
    lines into the rows. Restored afterwards."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    stream = os.fdopen(os.dup(saved), "w", encoding="utf-8", errors="strict")
    try:
        yield stream
    finally:
        with contextlib.suppress(OSError, ValueError):
            stream.close()  # flushes; a failure was reported by the GuardedStream around it
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
