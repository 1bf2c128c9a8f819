"""``clsx infer --ray``: batch inference on Ray Data, the same rows as local ``clsx infer``.

The pipeline, for a folder (or bucket) of images::

    driver: list images in sorted order  ──▶  ray.data.from_items([index, name, path])
      ──▶ map_batches(read + preprocess)     Ray tasks: clsx.core.preprocess, per-image errors kept
      ──▶ map_batches(_ClassifierActor)      an actor pool: one clsx Classifier per actor, the model
                                             loaded once per actor (CPU, or GPUs per worker)
      ──▶ driver: reorder by index, write rows with clsx.predict.sinks' CsvWriter / JsonlWriter

What stays identical to local ``clsx infer``: the listing (:func:`clsx.predict.listing.iter_image_paths` for
local paths), the preprocessing (:mod:`clsx.core.preprocess`, with the spec resolved once on the driver
and shipped to every task and actor), the error texts (:func:`clsx.predict.pipeline.decode`), the top-k
(:meth:`clsx.Classifier.classify`) and the writers. So the output is row-for-row the local one.

Resources (:func:`plan_resources`): an actor pool that reserves whole CPUs can leave the read tasks
no CPU, and the pipeline then waits forever (seen with 2 actors x 1 CPU on 2 CPUs). Actors therefore
reserve at most half the cluster's CPUs between them (fractional CPUs), and the readers are sized to
what is left, so every configuration this module accepts can make progress.

Artifacts (``.onnx`` + external data, ``.plan`` + sidecar) are shipped to the workers through Ray's
object store and cached per node in a folder private to the user (mode 0700), each file with the
sha256 the driver read: a worker uses no file it has not hashed to that digest, so a cluster needs no
shared copy of the model and a file planted in a temp folder is never the model. Images are read
where the workers run: local paths must be visible at the same path on every node (a shared
mount), or use a URI (``s3://``, ``gs://``, ``file://`` ... any pyarrow filesystem, as Ray's own
readers use).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import heapq
import json
import logging
import math
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TextIO

import numpy as np

from clsx.core.optional import require
from clsx.core.errors import ClsxError
from clsx.core.files import GuardedStream, data_stdout, first_line, text_output
from clsx.core.machine import cpu_cores
from clsx.predict.listing import iter_image_paths
from clsx.predict.pipeline import batched, decode
from clsx.predict.sinks import InferSummary, make_writer, stream_rows
from clsx.tools.infer import check_request, finish
from clsx.core.preprocess import IMAGE_EXTENSIONS, preprocess
from clsx.core.spec import FLOAT_NCHW, InputFormat, ModelSpec, PreprocessSpec

log = logging.getLogger(__name__)

PURPOSE = "clsx infer --ray"
MIN_READER_CPUS = 0.25  # what the actors must leave to the read tasks, at the least
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class RayInferError(ClsxError):
    """Ray unreachable, or a worker/resource configuration that could not make progress."""


# ---------------------------------------------------------------------------------------------
# Resources


@dataclass(frozen=True)
class RayResources:
    """What the actor pool and the read tasks reserve on the cluster."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    reader_cpus: float  # per read task
    readers: int  # read tasks at once
    cluster_cpus: float
    cluster_gpus: float

    def describe(self) -> str:
        gpu = f" + {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        return (f"{self.workers} workers x ({self.cpus_per_worker:g} CPU{gpu}), {self.readers} readers x "
                f"{self.reader_cpus:g} CPU, on {self.cluster_cpus:g} CPUs / {self.cluster_gpus:g} GPUs")


def plan_resources(
    cluster_cpus: float,
    cluster_gpus: float = 0.0,
    *,
    num_workers: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float | None = None,
    elastic: bool = False,
) -> RayResources:
    """Size the actor pool and the readers so that the pipeline can always make progress.

    Defaults: one worker per ``gpus_per_worker`` GPUs, else one per two CPUs; each worker reserves
    ``min(1, cpus / (2 * workers))`` CPUs, so the actors never hold more than half the CPUs and the
    readers (at most one CPU each) share the rest. A configuration that leaves the readers less than
    :data:`MIN_READER_CPUS`, or asks for more GPUs than the cluster has, is refused with the reason.
    ``elastic`` (a cluster that may autoscale): GPU shortfalls only warn.
    """
    if cluster_cpus <= 0:
        raise RayInferError("the Ray cluster has no CPUs to read images with")
    if gpus_per_worker < 0:
        raise RayInferError(f"--gpus-per-worker must be 0 or more; got {gpus_per_worker:g}")
    if num_workers is None:
        if gpus_per_worker > 0:
            num_workers = int(cluster_gpus // gpus_per_worker + 1e-9)
            if num_workers < 1:
                raise RayInferError(f"each worker asks for {gpus_per_worker:g} GPUs but the Ray cluster has {cluster_gpus:g}; pass --num-workers to wait for GPU nodes")
        else:
            num_workers = max(1, int(cluster_cpus // 2))
    if num_workers < 1:
        raise RayInferError(f"--num-workers must be at least 1; got {num_workers}")
    need_gpus = num_workers * gpus_per_worker
    if need_gpus > cluster_gpus + 1e-9:
        msg = f"{num_workers} workers x {gpus_per_worker:g} GPUs need {need_gpus:g} GPUs; the Ray cluster has {cluster_gpus:g}"
        if not elastic:
            raise RayInferError(msg + " (the actor pool would never start)")
        log.warning("%s; the pipeline waits until the cluster has them", msg)
    if cpus_per_worker is None:
        cpus_per_worker = _floor(min(1.0, cluster_cpus / (2 * num_workers)))
    if cpus_per_worker <= 0:
        raise RayInferError(f"CPUs per worker must be more than 0; got {cpus_per_worker:g}")
    free = cluster_cpus - num_workers * cpus_per_worker
    if free < MIN_READER_CPUS - 1e-9:
        raise RayInferError(
            f"{num_workers} workers x {cpus_per_worker:g} CPUs leave the image readers {max(free, 0):g} of the "
            f"cluster's {cluster_cpus:g} CPUs: the pipeline would stall; use fewer workers or fewer CPUs per worker"
        )
    reader_cpus = _floor(min(1.0, free / 2))
    readers = max(1, int(free / reader_cpus + 1e-9))
    return RayResources(workers=num_workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                        reader_cpus=reader_cpus, readers=readers, cluster_cpus=cluster_cpus, cluster_gpus=cluster_gpus)


def _floor(cpus: float) -> float:
    """Round down to Ray's resource granularity (1e-4), so the shares never add up to more than there is."""
    return math.floor(cpus * 10_000 + 1e-6) / 10_000


# ---------------------------------------------------------------------------------------------
# Listing


@dataclass(frozen=True)
class ImageList:
    """Images to classify, in sorted order: the names rows carry, and what the readers open."""

    names: list[str]
    paths: list[str]  # local paths, or paths inside ``filesystem``
    filesystem: Any = None  # a pyarrow FileSystem for URIs; None for local paths


def is_uri(path: str | os.PathLike) -> bool:
    return bool(_URI.match(os.fspath(path)))


def list_images(paths: Sequence[str | os.PathLike], filesystem: Any = None) -> ImageList:
    """Local paths: exactly :func:`clsx.predict.listing.iter_image_paths` (so rows match ``clsx infer``).
    URIs (or paths inside ``filesystem``): listed recursively through pyarrow, image extensions only,
    sorted by path components."""
    uris = [os.fspath(p) for p in paths if is_uri(p)]
    if not uris and filesystem is None:
        names = [os.fspath(p) for p in iter_image_paths(*paths)]
        return ImageList(names=names, paths=names)
    if uris and len(uris) != len(paths):
        raise ClsxError("mix of local paths and URIs; give one kind per run")
    fs_mod = require("pyarrow.fs", purpose=PURPOSE)
    found: dict[str, str] = {}
    fs = filesystem
    for given in (os.fspath(p) for p in paths):
        if filesystem is None:
            try:
                this_fs, root = fs_mod.FileSystem.from_uri(given)
            except Exception as exc:  # ArrowInvalid: unknown scheme, ...
                raise ClsxError(f"{given}: cannot open ({exc})") from None
            if fs is not None and type(this_fs) is not type(fs):
                raise ClsxError("URIs on different filesystems; give one filesystem per run")
            fs = this_fs
        else:
            root = given
        for name, path in _list_fs(fs_mod, fs, given, root):
            found[name] = path
    names = sorted(found, key=lambda n: n.split("/"))
    return ImageList(names=names, paths=[found[n] for n in names], filesystem=fs)


def _list_fs(fs_mod: Any, fs: Any, given: str, root: str) -> Iterator[tuple[str, str]]:
    try:
        info = fs.get_file_info(root)
        if info.type == fs_mod.FileType.NotFound:
            raise ClsxError(f"{given}: no such file or directory")
        if info.type == fs_mod.FileType.File:  # named explicitly: taken whatever its extension
            yield given, root
            return
        entries = fs.get_file_info(fs_mod.FileSelector(root, recursive=True))
    except OSError as exc:
        raise ClsxError(f"{given}: cannot list ({exc})") from None
    base = root.rstrip("/")
    for e in entries:
        if e.type == fs_mod.FileType.File and e.base_name.lower().endswith(IMAGE_EXTENSIONS):
            yield given.rstrip("/") + e.path[len(base):], e.path


# ---------------------------------------------------------------------------------------------
# What runs on the workers


class _Preprocessor:
    """The part of a Classifier the read tasks need: ``load`` = clsx.core.preprocess with the model's spec."""

    def __init__(self, spec: PreprocessSpec, fmt: InputFormat = FLOAT_NCHW) -> None:
        self.spec, self.fmt = spec, fmt

    def load(self, src: Any) -> np.ndarray:
        return preprocess(src, self.spec, self.fmt)


def _read_remote(pre: _Preprocessor, fs: Any, path: str, name: str) -> tuple[np.ndarray | None, str | None]:
    """Fetch one object and decode it through the same code (and error texts) as a local file."""
    try:
        with fs.open_input_stream(path) as f:
            data = f.read()
    except FileNotFoundError:
        return None, f"{name}: no such file"
    except PermissionError:
        return None, f"{name}: permission denied"
    except OSError as exc:
        return None, f"{name}: cannot read image ({type(exc).__name__}: {exc})"
    with tempfile.NamedTemporaryFile(prefix="clsx-ray-", suffix=Path(path).suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        tensor, error = decode(pre.load, tmp.name, name)
    return tensor, error.replace(tmp.name, name) if error else None


def read_batch(batch: Mapping[str, np.ndarray], *, spec: PreprocessSpec, filesystem: Any = None,
               fmt: InputFormat = FLOAT_NCHW) -> dict[str, np.ndarray]:
    """Ray task: decode + preprocess a batch of images (in the graph's input format); a failed image gets
    a zero tensor and its error."""
    pre = _Preprocessor(spec, fmt)
    names, paths = batch["name"], batch["path"]
    tensors = np.zeros(fmt.batch_shape(len(names), spec.input_size), dtype=fmt.dtype)
    errors = []
    for i, (name, path) in enumerate(zip(names, paths)):
        if filesystem is None:
            tensor, error = decode(pre.load, str(path), str(name))
        else:
            tensor, error = _read_remote(pre, filesystem, str(path), str(name))
        if tensor is not None:
            tensors[i] = tensor
        errors.append(error or "")
    return {"index": np.asarray(batch["index"]), "name": np.asarray(names, dtype=object), "tensor": tensors,
            "error": np.asarray(errors, dtype=object)}


@dataclass(frozen=True)
class ShippedModel:
    """How a worker gets the model: a model name as given, or an artifact's files via the object store.

    ``sha256`` holds each file's digest as the driver read it: a worker uses a file (the driver's own,
    or its cached copy) only after hashing it to that digest.
    """

    target: str  # a model name, or the artifact's file name
    files: Any = None  # [ObjectRef of {relative path: bytes}], or None for model names
    digest: str = ""
    origin: str = ""  # the artifact's absolute path on the driver
    stamp: tuple[int, int] = (0, 0)  # its (size, mtime_ns) there
    sha256: tuple[tuple[str, str], ...] = ()  # (relative path, sha256) of every file, the artifact first

    def materialize(self) -> str:
        """The target to open on this node: the driver's own file where this node sees it unchanged
        (same machine, shared mount: same size, mtime and contents), else a copy in this user's private
        cache, every file checked against the driver's digest (a file that does not match is replaced,
        never used)."""
        if self.files is None:
            return self.target
        if not self.sha256:
            raise RayInferError(f"{self.target}: shipped without file digests; the driver and this worker run different clsx versions")
        try:
            st = os.stat(self.origin)
            if (st.st_size, st.st_mtime_ns) == tuple(self.stamp) and _all_match(Path(self.origin).parent, self.sha256):
                return self.origin
        except (OSError, ClsxError):
            pass
        folder = cache_root() / self.digest
        _private_folder(folder)
        if not _all_match(folder, self.sha256):
            ray = require("ray", purpose=PURPOSE)
            contents: dict[str, bytes] = ray.get(self.files[0])
            for rel, want in sorted(self.sha256, key=lambda item: item[0] == self.target):  # the artifact itself last
                if _matches(folder, rel, want):
                    continue
                data = contents.get(rel)
                if data is None or hashlib.sha256(data).hexdigest() != want:
                    raise RayInferError(f"{self.target}: the object store's copy of {rel} does not match the driver's sha256")
                _write_verified(folder, rel, data)
            if not _all_match(folder, self.sha256):  # another process changed them meanwhile
                raise RayInferError(f"{self.target}: the cached copy in {folder} changed while it was written; refusing to use it")
        return str(folder / self.target)


CACHE_NAME = "clsx-ray-artifacts"
_fallback_root: list[Path] = []  # this process's own private cache, when the shared one is unusable


def cache_root() -> Path:
    """This user's artifact cache on this node: ``<tempdir>/clsx-ray-artifacts-<uid>``, created with
    mode 0700. A folder already there is used only when it is a real folder (not a link) owned by this
    user and closed to group and others; otherwise a fresh private folder of this process (mkdtemp) is
    used instead, with a warning."""
    base = Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else None
    root = base / (f"{CACHE_NAME}-{uid}" if uid is not None else CACHE_NAME)
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return _private_fallback(base, f"cannot create {root} ({exc.strerror or exc})")
    problem = _unsafe(root, uid)
    return root if problem is None else _private_fallback(base, f"{root} {problem}")


def _unsafe(folder: Path, uid: int | None) -> str | None:
    """Why ``folder`` may not hold this user's cache (None when it may)."""
    try:
        st = os.lstat(folder)
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "is not a plain folder"
    if uid is not None and st.st_uid != uid:
        return f"belongs to uid {st.st_uid}, not to this user ({uid})"
    if st.st_mode & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_fallback(base: Path, why: str) -> Path:
    if not _fallback_root:
        folder = Path(tempfile.mkdtemp(prefix=f"{CACHE_NAME}-", dir=base))  # 0700, a fresh unpredictable name
        atexit.register(shutil.rmtree, folder, True)
        _fallback_root.append(folder)
        log.warning("not using the shared artifact cache: %s; using %s for this process", why, folder)
    return _fallback_root[0]


def _private_folder(folder: Path) -> None:
    """Create ``folder`` (mode 0700) inside the private cache, or check the one there."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    problem = _unsafe(folder, os.getuid() if hasattr(os, "getuid") else None)
    if problem is not None:
        raise RayInferError(f"artifact cache folder {folder} {problem}; refusing to use it")


def _matches(folder: Path, rel: str, want: str) -> bool:
    """Whether ``folder/rel`` is a regular file inside ``folder`` whose sha256 is ``want``."""
    from clsx.core.artifact import inside
    from clsx.core.files import sha256_file

    marker = folder / ".clsx-artifact"  # inside() checks names relative to an artifact's folder
    try:
        path = inside(marker, rel, what="shipped file")
        return sha256_file(path) == want
    except (OSError, ClsxError):
        return False


def _all_match(folder: Path, digests: Sequence[tuple[str, str]]) -> bool:
    return all(_matches(folder, rel, want) for rel, want in digests)


def _write_verified(folder: Path, rel: str, data: bytes) -> None:
    """Write ``folder/rel`` exclusively through :func:`clsx.core.files.write_file` (a fresh temporary
    renamed over whatever is there: a planted link is replaced, not followed)."""
    from clsx.core.files import write_file

    parts = rel.split("/")
    if not rel or "\0" in rel or rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise RayInferError(f"shipped file name {rel!r} does not name a file inside the artifact; refusing it")
    target = folder / rel
    for part in reversed(Path(rel).parents[:-1]):  # sub-folders of the artifact (external data in weights/...)
        sub = folder / part
        try:
            os.mkdir(sub, 0o700)
        except FileExistsError:
            if sub.is_symlink() or not sub.is_dir():
                raise RayInferError(f"artifact cache: {sub} is not a plain folder; refusing to use it") from None
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    write_file(target, data, force=True)


def ship_model(ray: Any, target: Any) -> ShippedModel:
    """Put an artifact's files (with external data and sidecar) into the object store; names pass as is.

    Every file goes through :func:`clsx.core.artifact.open_artifact` first (a file it names outside
    its folder is refused before anything is read), and travels with its sha256."""
    from clsx.core.artifact import artifact_files

    from clsx.runtimes.registry import split_backend

    if not isinstance(target, (str, os.PathLike)):
        raise ClsxError("clsx infer --ray takes an artifact path or a model name, not an in-memory model")
    text = split_backend(target)[0] if isinstance(target, str) else os.fspath(target)  # the job names the backend
    p = Path(text)
    if not p.is_file():
        return ShippedModel(target=text)
    digest = hashlib.sha256()
    contents: dict[str, bytes] = {}
    sums: list[tuple[str, str]] = []
    for f in artifact_files(p):
        rel = f.relative_to(p.parent).as_posix()
        contents[rel] = f.read_bytes()
        sums.append((rel, hashlib.sha256(contents[rel]).hexdigest()))
        digest.update(rel.encode() + b"\0" + bytes.fromhex(sums[-1][1]))
    st = p.stat()
    return ShippedModel(target=p.name, files=[ray.put(contents)], digest=digest.hexdigest()[:32],
                        origin=str(p.resolve()), stamp=(st.st_size, st.st_mtime_ns), sha256=tuple(sums))


class ClassifierActor:
    """Ray actor: one clsx Classifier, the model loaded once in ``__init__``, then batch after batch."""

    def __init__(self, model: ShippedModel, backend: str, device: str | None, open_kw: dict[str, Any],
                 topk: int, torch_threads: int | None = None) -> None:
        from clsx.predict.classifier import Classifier
        from clsx.runtimes.registry import open as open_runtime

        if torch_threads and backend == "torch":
            import torch

            torch.set_num_threads(torch_threads)
        try:
            self.runtime = open_runtime(model.materialize(), backend=backend, device=device, **open_kw)
            self.classifier = Classifier(self.runtime)
            self.topk = topk
            self.runtime.activate()
        except ClsxError as exc:  # Ray passes an actor's init failure to the driver as text only
            raise WorkerUserError(f"{USER_ERROR_MARK}{exc}{USER_ERROR_MARK}") from None

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from clsx.predict.classifier import Prediction

        names = [str(n) for n in batch["name"]]
        errors = [str(e) for e in batch["error"]]
        good = [i for i, e in enumerate(errors) if not e]
        scored = iter(self.classifier.classify(np.asarray(batch["tensor"])[good], [names[i] for i in good], self.topk) if good else [])
        preds = [next(scored) if not err else Prediction(source=name, error=err) for name, err in zip(names, errors)]
        return {"index": np.asarray(batch["index"]), "prediction": np.asarray([json.dumps(asdict(p)) for p in preds], dtype=object)}


def _prediction(text: str):
    from clsx.predict.classifier import Prediction

    d = json.loads(text)
    return Prediction(source=d["source"], indices=tuple(d["indices"]), labels=tuple(d["labels"]),
                      probs=tuple(d["probs"]), error=d["error"])


# ---------------------------------------------------------------------------------------------
# The driver


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Connect to ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``) or start a local Ray on this
    machine's cores; disconnect afterwards. A Ray already initialised in this process is used as is."""
    ray = require("ray", purpose=PURPOSE)
    require("ray.data", purpose=PURPOSE)
    if ray.is_initialized():
        yield ray
        return
    verbose = log.isEnabledFor(logging.DEBUG)
    quiet = logging.DEBUG if verbose else logging.ERROR
    if address is not None:
        _probe(address)
    with _ray_quiet(verbose):
        try:
            if address is None:
                ray.init(address="local", num_cpus=cpu_cores(), include_dashboard=False, log_to_driver=False, logging_level=quiet)
            else:
                ray.init(address=address, log_to_driver=False, logging_level=quiet)
        except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError ... from Ray
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            reason = first_line(exc)
            raise RayInferError(f"cannot connect to {where}: {reason}") from None
        try:
            yield ray
        finally:
            ray.shutdown()


#: Ray's own loggers (its Python side): token-auth notices, Ray Data's per-dataset chatter and
#: "progress bars disabled" are internal; clsx's log line says what runs. ``-v`` shows them.
_RAY_LOGGERS = ("ray", "ray.data")


@contextmanager
def _ray_quiet(verbose: bool) -> Iterator[None]:
    """Keep Ray's internal reports off stderr unless ``verbose``: its Python loggers at ERROR, its
    Python warnings (operator concurrency hints) ignored, and its C++ core worker's log (lines like
    ``core_worker.cc:2465 E ...`` about actor arguments) at FATAL through ``RAY_BACKEND_LOG_LEVEL``,
    which the core worker reads when ``ray.init`` starts it (a value the user set is kept)."""
    if verbose:
        yield
        return
    saved = {name: logging.getLogger(name).level for name in _RAY_LOGGERS}
    env_before = os.environ.get("RAY_BACKEND_LOG_LEVEL")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        with warnings.catch_warnings(), _native_log_filter():
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
            for name in _RAY_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if env_before is None:
            os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)


#: A line of Ray's C++ log (``[2026-12-06 11:50:42,664 E 7574 7574] core_worker.cc:2465: ...``).
_RAY_NATIVE_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWEF] \d+ \d+\] ")


@contextmanager
def _native_log_filter() -> Iterator[None]:
    """Drop Ray's C++ log lines from this process's stderr while Ray runs. The core worker writes them
    straight to file descriptor 2 (even the notice that sets its level), past Python's logging, so fd 2
    goes through a pipe whose reader passes every other line (clsx's own, Python's) to the real stderr."""
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as src:
            for line in src:
                if not _RAY_NATIVE_LINE.match(line):
                    with contextlib.suppress(OSError):
                        os.write(real, line)

    reader = threading.Thread(target=pump, name="clsx-ray-stderr", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe closes once Ray's processes (which inherited it) have exited
        reader.join(timeout=5)
        if not reader.is_alive():
            os.close(real)


@dataclass(frozen=True)
class RayJob:
    """Everything decided on the driver before Ray starts: the images, the model's spec and top-k."""

    target: Any
    images: ImageList
    spec: ModelSpec  # with preprocess=/labels= overrides applied: workers use exactly this spec
    backend: str
    device: str | None
    topk: int  # capped at the number of classes
    open_kw: dict[str, Any]
    input_format: InputFormat = FLOAT_NCHW  # what the graph's image input takes (the read tasks make it)

    @contextmanager
    def start(
        self,
        *,
        batch_size: int = 32,
        address: str | None = None,
        num_workers: int | None = None,
        gpus_per_worker: float = 0.0,
        cpus_per_worker: float | None = None,
        progress: bool = False,
    ) -> Iterator["RayRun"]:
        """Connect to Ray and plan the resources (errors surface here, before any row is written);
        the pipeline runs as the yielded :class:`RayRun` is iterated. Disconnects on exit."""
        if not self.images.names:
            yield RayRun(iter(()), None, "")
            return
        if address is not None and self.images.filesystem is None:
            log.info("local paths: every Ray node must see them at the same path (a shared mount); otherwise use a URI")
        worker_kw = {key: v for key, v in self.open_kw.items() if key not in ("preprocess", "labels")}
        worker_kw["spec"] = self.spec
        if self.spec.random_weights:  # the driver said so already (or was told not to): not once per actor
            worker_kw["random_weights"] = True
        with ray_session(address) as ray:
            cluster = ray.cluster_resources()
            res = plan_resources(float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0)), num_workers=num_workers,
                                 gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, elastic=address is not None)
            threads = None if res.gpus_per_worker else max(1, int(res.cpus_per_worker))
            if self.backend == "onnxrt" and "threads" not in worker_kw and threads:
                worker_kw["threads"] = threads  # ORT's default (a thread per core) oversubscribes shared nodes
            desc = f"Ray Data: {res.describe()}; {self.backend} backend"
            log.info("%s", desc)
            ds = _dataset(ray, self, res, ship_model(ray, self.target), worker_kw, threads, batch_size, progress)
            yield RayRun(_in_order(ds, len(self.images.names)), res, desc)

    def predictions(self, **start_kw: Any) -> Iterator[Any]:
        """Predictions in sorted path order (takes :meth:`start`'s options); Ray starts on the first ``next``."""
        with self.start(**start_kw) as run:
            yield from run


@dataclass
class RayRun:
    """A started pipeline: iterate it for Predictions in sorted path order."""

    predictions: Iterator[Any]
    resources: RayResources | None
    runtime: str  # what runs, in words (for the summary line)

    def __iter__(self) -> Iterator[Any]:
        return self.predictions


def prepare_job(
    target: Any,
    paths: Sequence[str | os.PathLike],
    *,
    topk: int = 5,
    backend: str | None = None,
    device: str | None = None,
    filesystem: Any = None,
    **open_kw: Any,
) -> RayJob:
    """List the images and resolve the model's spec on the driver (user errors surface here, before Ray)."""
    require("ray", purpose=PURPOSE)  # the install hint comes first
    from clsx.predict.classifier import Classifier
    from clsx.runtimes.registry import open as open_runtime

    images = list_images(paths, filesystem)
    runtime = open_runtime(target, backend=backend, device=device, **open_kw)  # cheap: nothing loads
    k = Classifier(runtime).effective_topk(topk)
    return RayJob(target=target, images=images, spec=runtime.spec, backend=runtime.backend, device=device,
                  topk=k, open_kw=dict(open_kw), input_format=runtime.input_format)


def _probe(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a HOST:PORT nobody answers at: Ray itself retries for minutes before giving up."""
    m = re.match(r"^(?:ray://)?\[?([^\]\s]+?)\]?:(\d+)$", address.strip())
    if m is None:  # "auto", "local", ...: Ray answers these quickly itself
        return
    host, port = m.group(1), int(m.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise RayInferError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def predict_with_ray(
    target: Any,
    paths: Sequence[str | os.PathLike],
    *,
    topk: int = 5,
    batch_size: int = 32,
    address: str | None = None,
    num_workers: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float | None = None,
    backend: str | None = None,
    device: str | None = None,
    filesystem: Any = None,
    progress: bool = False,
    **open_kw: Any,
) -> Iterator[Any]:
    """Predictions for every image under ``paths`` (local paths or URIs), in sorted path order,
    computed on Ray Data; the Python face of ``clsx infer --ray``.

    ``target``/``backend``/``device``/``open_kw`` are what :func:`clsx.open` takes; ``filesystem``: a
    pyarrow FileSystem the paths live in. Images that cannot be read give Predictions with ``error``
    set. Listing and model errors raise at call time; Ray starts when the iterator is first advanced.
    """
    if batch_size < 1:
        raise ClsxError(f"batch size must be at least 1; got {batch_size}")
    job = prepare_job(target, paths, topk=topk, backend=backend, device=device, filesystem=filesystem, **open_kw)
    return job.predictions(batch_size=batch_size, address=address, num_workers=num_workers,
                           gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, progress=progress)


def _dataset(ray: Any, job: RayJob, res: RayResources, model: ShippedModel, worker_kw: dict[str, Any],
             threads: int | None, batch_size: int, progress: bool) -> Any:
    require("ray.data", purpose=PURPOSE)
    images = job.images

    ctx = ray.data.DataContext.get_current()
    saved = ctx.execution_options.preserve_order, ctx.enable_progress_bars
    ctx.execution_options.preserve_order = True  # rows come back in listing order (re-checked by _in_order)
    ctx.enable_progress_bars = progress
    try:  # a Dataset keeps a copy of the context it was created under
        items = [{"index": i, "name": n, "path": p} for i, (n, p) in enumerate(zip(images.names, images.paths))]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(math.ceil(len(items) / batch_size), 4096)))
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
    ds = ds.map_batches(read_batch, batch_size=batch_size, batch_format="numpy",
                        fn_kwargs={"spec": job.spec.preprocess, "filesystem": images.filesystem, "fmt": job.input_format},
                        num_cpus=res.reader_cpus, **_task_pool(ray, res.readers))
    gpu = {"num_gpus": res.gpus_per_worker} if res.gpus_per_worker else {}
    return ds.map_batches(ClassifierActor, batch_size=batch_size, batch_format="numpy",
                          fn_constructor_kwargs={"model": model, "backend": job.backend, "device": job.device,
                                                 "open_kw": worker_kw, "topk": job.topk, "torch_threads": threads},
                          num_cpus=res.cpus_per_worker, compute=ray.data.ActorPoolStrategy(size=res.workers), **gpu)


def _task_pool(ray: Any, size: int) -> dict[str, Any]:
    strategy = getattr(ray.data, "TaskPoolStrategy", None)
    return {"compute": strategy(size=size)} if strategy is not None else {"concurrency": size}


def _in_order(ds: Any, total: int) -> Iterator[Any]:
    """Predictions in index order, whatever order Ray hands the batches back in."""
    pending: list[tuple[int, str]] = []
    want = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i, text in zip(batch["index"], batch["prediction"]):
                heapq.heappush(pending, (int(i), str(text)))
            while pending and pending[0][0] == want:
                yield _prediction(heapq.heappop(pending)[1])
                want += 1
    except Exception as exc:
        user = _user_error(exc)
        if user is None:
            raise
        raise type(user)(str(user)) from None
    if want != total:
        raise RayInferError(f"Ray returned {want} of {total} rows")


#: brackets the message of a ClsxError raised while an actor loads the model (see ClassifierActor)
USER_ERROR_MARK = "\u2063clsx-user-error\u2063"
_MARKED = re.compile(re.escape(USER_ERROR_MARK) + r"(.+?)" + re.escape(USER_ERROR_MARK), re.S)


class WorkerUserError(RuntimeError):
    """A user error (a bad artifact, a missing backend, no GPU) while a worker loads the model."""


def _user_error(exc: BaseException) -> ClsxError | None:
    """The ClsxError a worker raised (a bad artifact, a missing backend), unwrapped from Ray's wrappers
    (as an object from a task, or as the marked text of an actor's failed ``__init__``)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(cause, ClsxError):
            return cause
        if isinstance(e, ClsxError) and not hasattr(e, "cause"):
            return e
        marked = _MARKED.search(str(e))
        if marked:
            return RayInferError(f"a Ray worker could not load the model: {first_line(marked.group(1))}")
        stack += [c for c in (cause, e.__cause__, e.__context__) if isinstance(c, BaseException)]
    return None


def run_ray_infer(
    target: Any,
    paths: Sequence[str | os.PathLike],
    *,
    output: str | os.PathLike | None = None,
    stdout: TextIO | None = None,
    force: bool = False,
    strict: bool = False,
    topk: int = 5,
    fmt: str = "csv",
    batch_size: int = 32,
    address: str | None = None,
    num_workers: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float | None = None,
    progress: bool | None = None,
    backend: str | None = None,
    device: str | None = None,
    **open_kw: Any,
) -> InferSummary:
    """``clsx infer --ray``: the rows of :func:`clsx.tools.infer.run_infer`, computed on Ray Data.

    Rows go to ``output`` (written atomically) or stream to ``stdout`` in sorted path order; with
    ``strict``, any image that failed raises ClsxError after all rows are out.
    """
    out_path = check_request(paths, output=output, force=force, fmt=fmt, batch_size=batch_size, is_remote=is_uri)
    if progress is None:
        progress = sys.stderr.isatty()
    job = prepare_job(target, paths, topk=topk, backend=backend, device=device, **open_kw)

    def write(stream: TextIO, run: RayRun) -> InferSummary:
        n, failed, seconds = stream_rows(batched(run, batch_size), make_writer(fmt, stream, job.topk), progress=progress)
        return InferSummary(images=n, failed=failed, seconds=seconds, runtime=run.runtime,
                            random_weights=n > 0 and job.spec.random_weights)

    with job.start(batch_size=batch_size, address=address, num_workers=num_workers, gpus_per_worker=gpus_per_worker,
                   cpus_per_worker=cpus_per_worker, progress=progress) as run:
        if out_path is None and stdout is None:
            with data_stdout() as real:  # Ray prints on fd 1: only rows go to the real stdout
                summary = write(GuardedStream(real), run)
        elif out_path is None:
            summary = write(GuardedStream(stdout), run)
        else:
            with text_output(out_path, force=force) as f:
                summary = write(f, run)
    return finish(summary, strict=strict)
