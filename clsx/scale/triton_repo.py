"""``clsx triton-repo``: a Triton Inference Server model repository from clsx artifacts.

One model per artifact, laid out as Triton expects::

    REPO/<name>/config.pbtxt      platform, max_batch_size, inputs/outputs, batching, instances
    REPO/<name>/labels.txt        one class name per line (label_filename: Triton's classification
                                  extension returns "score:index:label")
    REPO/<name>/clsx.json         the artifact's clsx metadata: the preprocessing clients must apply
    REPO/<name>/1/model.onnx      (+ its external data files) or 1/model.plan

Everything in ``config.pbtxt`` comes from the artifact's metadata: tensor names, dims without the
batch axis, data types; ``max_batch_size`` is the engine profile's largest batch for plans and
``--max-batch`` (else the exported graph's recorded maximum, else 32) for ONNX. Triton does no image
preprocessing: clients decode and preprocess with :mod:`clsx.core.preprocess` and the spec in ``clsx.json``,
exactly as ``clsx infer`` does, and send NCHW float32 tensors.

The config is written as text; :func:`parse_config` checks it against Triton's own protobuf schema
(``model_config_pb2`` from the ``tritonclient`` package) when that is installed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping, Sequence

from clsx import __version__
from clsx.core.files import OutputError, check_writable_folder, make_folders, temp_folder
from clsx.core.errors import ClsxError, OutputExistsError
from clsx.core.metadata import dumps, is_partial, read_metadata_or_graph, spec_of
from clsx.core.artifact import artifact_files

log = logging.getLogger(__name__)

ONNX_PLATFORM = "onnxruntime_onnx"
PLAN_PLATFORM = "tensorrt_plan"
_PLATFORMS = {".onnx": ONNX_PLATFORM, ".plan": PLAN_PLATFORM, ".engine": PLAN_PLATFORM}
_MODEL_FILES = {ONNX_PLATFORM: "model.onnx", PLAN_PLATFORM: "model.plan"}
DEFAULT_ONNX_MAX_BATCH = 32
LABELS_FILE = "labels.txt"
METADATA_FILE = "clsx.json"
VERSION_DIR = "1"
DEVICES = ("auto", "cpu", "gpu")
_KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
#: Model names (folder names in the repository, path segments of Triton's HTTP/gRPC model URLs): 1 to
#: MAX_NAME characters from [A-Za-z0-9_.-], the first a letter, digit or '_' (never '.', so no hidden
#: folder, '.' or '..'; never '-', so no name that reads as an option). No '/', whitespace or newline.
MAX_NAME = 128
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,%d}" % (MAX_NAME - 1))

# numpy dtype names (as the metadata writes them) -> Triton's DataType enum
_TRITON_TYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float64": "TYPE_FP64",
    "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "int16": "TYPE_INT16", "uint16": "TYPE_UINT16",
    "int32": "TYPE_INT32", "uint32": "TYPE_UINT32", "int64": "TYPE_INT64", "uint64": "TYPE_UINT64",
    "bool": "TYPE_BOOL",
}


class TritonRepoError(ClsxError):
    """An artifact Triton cannot serve as asked, or a repository that cannot be written."""


@dataclass(frozen=True)
class TritonModel:
    """One model of the repository, planned from an artifact (nothing written yet)."""

    name: str
    artifact: Path
    platform: str
    max_batch_size: int
    dynamic_batching: bool
    instances: int
    kind: str  # KIND_GPU | KIND_CPU | KIND_AUTO
    labels: tuple[str, ...] | None
    config: str  # config.pbtxt text
    files: tuple[Path, ...]  # the artifact file first, then its ONNX external data files
    metadata: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def model_file(self) -> str:
        return _MODEL_FILES[self.platform]

    def to_dict(self, repo: Path) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(repo / self.name),
            "artifact": str(self.artifact),
            "platform": self.platform,
            "max_batch_size": self.max_batch_size,
            "dynamic_batching": self.dynamic_batching,
            "instances": self.instances,
            "kind": self.kind,
            "labels": bool(self.labels),
        }


# ---------------------------------------------------------------------------------------------
# Planning one model


def default_name(artifact: str | Path) -> str:
    """``models/lite0.fp16.onnx`` -> ``lite0_fp16`` (the file name without suffix, dots to underscores)."""
    stem = Path(artifact).stem
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:MAX_NAME] or "model"


def check_name(name: str) -> str:
    """``name`` if it is a valid model name (see :data:`_NAME_RE`); one TritonRepoError line otherwise."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        shown = repr(name) if not isinstance(name, str) or len(name) <= 60 else repr(name[:57]) + "..."
        length = f" ({len(name)} characters)" if isinstance(name, str) and len(name) > MAX_NAME else ""
        raise TritonRepoError(f"model name {shown}{length}: use 1 to {MAX_NAME} letters, digits, '_', '-' and '.' "
                              "('-' and '.' not first)")
    return name


def plan_model(
    artifact: str | Path,
    *,
    name: str | None = None,
    max_batch: int | None = None,
    dynamic_batching: bool = True,
    queue_delay_us: int | None = None,
    instances: int = 1,
    device: str = "auto",
) -> TritonModel:
    """Read ``artifact``'s metadata and work out its Triton model (raises TritonRepoError/MetadataError)."""
    path = Path(artifact)
    platform = _PLATFORMS.get(path.suffix.lower())
    if platform is None:
        raise TritonRepoError(f"{path}: Triton serves .onnx graphs (onnxruntime_onnx) and .plan/.engine TensorRT engines; not {path.suffix or 'a suffix-less file'}")
    if not path.is_file():
        raise TritonRepoError(f"{path}: no such file")
    if instances < 1:
        raise TritonRepoError(f"--instances must be at least 1; got {instances}")
    if max_batch is not None and max_batch < 1:
        raise TritonRepoError(f"--max-batch must be at least 1; got {max_batch}")
    if device not in DEVICES:
        raise TritonRepoError(f"unknown device {device!r}: use {', '.join(DEVICES)}")
    if queue_delay_us is not None and queue_delay_us < 0:
        raise TritonRepoError(f"--queue-delay-us must be 0 or more; got {queue_delay_us}")
    files = tuple(artifact_files(path, sidecar=False))  # every file it names checked first; the metadata goes to clsx.json
    doc = read_metadata_or_graph(path)  # a graph clsx did not make: what it says (Triton needs no preprocessing)
    if not is_partial(doc):
        spec_of(doc, where=str(path))  # a full document must hold a valid spec
    model_name = check_name(default_name(path) if name is None else name)  # an empty --name is refused, not replaced

    if platform == PLAN_PLATFORM:
        _check_plan(path, doc)
        if device == "cpu":
            raise TritonRepoError(f"{path}: a TensorRT engine runs on a GPU; --device cpu applies to ONNX models only")
        kind = "KIND_GPU"
    else:
        kind = _KINDS[device]

    inputs, outputs = _tensors(path, doc)
    batch_dim = inputs[0]["shape"][0] if inputs[0]["shape"] else None
    max_batch_size = _max_batch_size(path, doc, platform, batch_dim, max_batch)
    batching = dynamic_batching and max_batch_size > 1
    if dynamic_batching and not batching:
        log.info("%s: batch size 1 only; dynamic batching left off", path.name)

    labels = tuple((doc.get("model") or {}).get("labels") or ()) or None
    if not labels:
        log.warning("%s: no labels in its metadata; Triton's classification results will carry class indices only", path.name)
    config = render_config(
        name=model_name, platform=platform, max_batch_size=max_batch_size, inputs=inputs, outputs=outputs,
        label_output=outputs[0]["name"] if labels else None, dynamic_batching=batching,
        queue_delay_us=queue_delay_us, instances=instances, kind=kind,
        comment=_comment(path, doc),
    )
    return TritonModel(name=model_name, artifact=path, platform=platform, max_batch_size=max_batch_size,
                       dynamic_batching=batching, instances=instances, kind=kind, labels=labels,
                       config=config, files=files, metadata=doc)


def _check_plan(path: Path, doc: Mapping[str, Any]) -> None:
    trt = doc.get("tensorrt") or {}
    if doc.get("artifact") != "tensorrt" or not trt:
        raise TritonRepoError(f"{path}: its metadata does not describe a TensorRT engine (artifact={doc.get('artifact')!r})")
    if trt.get("flavour") == "tensorrt_rtx":
        raise TritonRepoError(
            f"{path}: a TensorRT-RTX engine; Triton's tensorrt_plan backend loads standard TensorRT engines only. "
            f"Serve the ONNX graph ({trt.get('onnx_file') or 'model.onnx'}) instead, or build with --target tensorrt"
        )


def _tensors(path: Path, doc: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    inputs, outputs = list(doc.get("inputs") or []), list(doc.get("outputs") or [])
    if not inputs or not outputs:
        raise TritonRepoError(f"{path}: its metadata lists no inputs/outputs")
    for t in inputs + outputs:
        if str(t.get("dtype", "float32")) not in _TRITON_TYPES:
            raise TritonRepoError(f"{path}: tensor {t.get('name')!r} has dtype {t.get('dtype')!r}, which Triton has no type for")
    return inputs, outputs


def _max_batch_size(path: Path, doc: Mapping[str, Any], platform: str, batch_dim: Any, requested: int | None) -> int:
    """The largest batch Triton may send: the engine profile's, or --max-batch / the export's for ONNX."""
    if isinstance(batch_dim, int):  # exported with a fixed batch
        if batch_dim == 1 and requested in (None, 1):
            return 1
        if requested is None:  # Triton's way to serve a fixed shape: no batching, dims include the batch axis
            log.info("%s: fixed batch of %d: served without Triton batching (max_batch_size 0; each request is a "
                     "whole batch of %d)", path.name, batch_dim, batch_dim)
            return 0
        raise TritonRepoError(
            f"{path}: exported with a fixed batch of {batch_dim}; Triton cannot batch it further (asked for "
            f"--max-batch {requested}): leave --max-batch out to serve it as is, or export with a dynamic batch"
        )
    if platform == PLAN_PLATFORM:
        profile = (doc.get("tensorrt") or {}).get("profile") or {}
        try:
            lo, hi = int(profile["min"][0]), int(profile["max"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            raise TritonRepoError(f"{path}: its sidecar records no batch profile (tensorrt.profile)") from None
        if lo > 1:
            raise TritonRepoError(f"{path}: the engine's profile starts at batch {lo}, but Triton sends any batch from 1; rebuild with --min-batch 1")
        if requested is not None and requested > hi:
            raise TritonRepoError(f"{path}: --max-batch {requested} is more than the engine's profile allows ({hi}); rebuild with --max-batch {requested}")
        return requested or hi
    if requested is not None:
        return requested
    recorded = ((doc.get("producer") or {}).get("batch") or {}).get("max")
    return int(recorded) if recorded else DEFAULT_ONNX_MAX_BATCH


def _comment(path: Path, doc: Mapping[str, Any]) -> str:
    model = doc.get("model") or {}
    text = f"written by clsx {__version__} from {path.name}: {model.get('ref') or model.get('name')}, {doc.get('precision')}"
    trt = doc.get("tensorrt") or {}
    if trt:
        text += f"; TensorRT {trt.get('version')} engine: serve it with the Triton release built on that TensorRT version"
    return text


# ---------------------------------------------------------------------------------------------
# config.pbtxt


def _dims(shape: Sequence[Any]) -> str:
    return "[ " + ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape) + " ]"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(
    *,
    name: str,
    platform: str,
    max_batch_size: int,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    label_output: str | None,
    dynamic_batching: bool,
    queue_delay_us: int | None,
    instances: int,
    kind: str,
    comment: str = "",
) -> str:
    """``config.pbtxt`` text (protobuf text format of Triton's ModelConfig)."""
    skip = 1 if max_batch_size > 0 else 0  # with batching, dims exclude the batch axis
    lines = [f"# {comment}"] if comment else []
    lines += [f"name: {_quote(name)}", f"platform: {_quote(platform)}", f"max_batch_size: {max_batch_size}", "input ["]
    for i, t in enumerate(inputs):
        shape = list(t["shape"])[skip:]
        lines += ["  {", f"    name: {_quote(str(t['name']))}", f"    data_type: {_TRITON_TYPES[str(t.get('dtype', 'float32'))]}"]
        if len(shape) == 3:
            lines.append(f"    format: FORMAT_{t.get('layout') or 'NCHW'}")
        lines += [f"    dims: {_dims(shape)}", "  }" + ("," if i < len(inputs) - 1 else "")]
    lines.append("]")
    lines.append("output [")
    for i, t in enumerate(outputs):
        shape = list(t["shape"])[skip:]
        lines += ["  {", f"    name: {_quote(str(t['name']))}", f"    data_type: {_TRITON_TYPES[str(t.get('dtype', 'float32'))]}",
                  f"    dims: {_dims(shape)}"]
        if label_output == t["name"]:
            lines.append(f"    label_filename: {_quote(LABELS_FILE)}")
        lines.append("  }" + ("," if i < len(outputs) - 1 else ""))
    lines.append("]")
    if dynamic_batching:
        lines.append("dynamic_batching {")
        if queue_delay_us is not None:
            lines.append(f"  max_queue_delay_microseconds: {queue_delay_us}")
        lines.append("}")
    lines += ["instance_group [", "  {", f"    count: {instances}", f"    kind: {kind}", "  }", "]"]
    return "\n".join(lines) + "\n"


@cache
def model_config_schema() -> ModuleType:
    """Triton's ``model_config_pb2`` as the ``tritonclient`` package ships it.

    ``tritonclient.grpc`` imports grpcio on import; the schema module itself needs only protobuf, so
    without the grpc extra it is loaded from its file.
    """
    try:
        from tritonclient.grpc import model_config_pb2  # type: ignore[import-not-found]

        return model_config_pb2
    except (ImportError, RuntimeError):  # RuntimeError: tritonclient installed without grpc
        pass
    from clsx.core.optional import require

    pkg = require("tritonclient", purpose="checking config.pbtxt against Triton's schema")
    source = Path(next(iter(pkg.__path__))) / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("clsx_triton_model_config_pb2", source)
    if spec is None or spec.loader is None or not source.is_file():
        raise TritonRepoError(f"this tritonclient ({source.parent}) ships no model_config_pb2.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def parse_config(text: str) -> Any:
    """``config.pbtxt`` text -> Triton's ``inference.ModelConfig`` message (raises on anything Triton would not parse)."""
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_schema().ModelConfig())


# ---------------------------------------------------------------------------------------------
# Writing the repository


def write_triton_repository(
    artifacts: Iterable[str | Path],
    repo: str | Path,
    *,
    names: Sequence[str] | None = None,
    max_batch: int | None = None,
    dynamic_batching: bool = True,
    queue_delay_us: int | None = None,
    instances: int = 1,
    device: str = "auto",
    force: bool = False,
) -> list[TritonModel]:
    """Write one Triton model per artifact into ``repo`` (created if needed; other models in it are kept).

    Every model is checked before anything is written (metadata present, names unique, no existing
    model folder unless ``force``); each model folder is assembled aside and renamed into place, so
    Triton never sees half a model.
    """
    paths = [Path(a) for a in artifacts]
    if not paths:
        raise TritonRepoError("no artifacts given")
    if names and len(names) != len(paths):
        raise TritonRepoError(f"{len(names)} --name values for {len(paths)} artifacts; give one name per artifact, in order")
    models = [
        plan_model(p, name=names[i] if names else None, max_batch=max_batch, dynamic_batching=dynamic_batching,
                   queue_delay_us=queue_delay_us, instances=instances, device=device)
        for i, p in enumerate(paths)
    ]
    _check_unique(models)
    root = Path(repo)
    if root.exists() and not root.is_dir():
        raise TritonRepoError(f"{root} exists and is not a folder")
    check_writable_folder(root, what="the model repository", error=TritonRepoError)
    existing = [m.name for m in models if (root / m.name).exists()]
    if existing and not force:
        raise OutputExistsError(f"{root}: model folder(s) {', '.join(existing)} exist; pass --force to replace them")
    _validate(models)

    make_folders(root)  # and its missing parents, with the umask's permissions
    with temp_folder(root) as stage:
        for m in models:
            _assemble(m, stage / m.name)
        _publish_folders([(stage / m.name, root / m.name) for m in models], stage, force=force)
    for m in models:
        log.info("wrote %s (%s, max_batch_size %d)", root / m.name, m.platform, m.max_batch_size)
    return models


def _check_unique(models: list[TritonModel]) -> None:
    seen: dict[str, list[str]] = {}
    for m in models:
        seen.setdefault(m.name, []).append(str(m.artifact))
    dups = {n: a for n, a in seen.items() if len(a) > 1}
    if dups:
        listed = "; ".join(f"{n!r} from {', '.join(a)}" for n, a in dups.items())
        raise TritonRepoError(f"duplicate model names in one repository: {listed}; give each artifact its own --name")


def _validate(models: list[TritonModel]) -> None:
    """Parse each config with Triton's schema where tritonclient is installed (a failure is a clsx bug)."""
    if importlib.util.find_spec("tritonclient") is None:
        log.debug("tritonclient not installed; config.pbtxt not checked against Triton's schema")
        return
    for m in models:
        parse_config(m.config)


def _assemble(model: TritonModel, folder: Path) -> None:
    version = folder / VERSION_DIR
    version.mkdir(parents=True)
    main, *extra = model.files
    shutil.copyfile(main, version / model.model_file)
    for data in extra:  # ONNX external data keeps its name: the graph refers to it by that name
        target = version / data.relative_to(main.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, target)
    (folder / "config.pbtxt").write_text(model.config, encoding="utf-8")
    (folder / METADATA_FILE).write_text(dumps(model.metadata), encoding="utf-8")
    if model.labels:
        text = "\n".join(" ".join(label.split()) for label in model.labels) + "\n"  # one line per class
        (folder / LABELS_FILE).write_text(text, encoding="utf-8")


def _publish_folders(pairs: list[tuple[Path, Path]], stage: Path, *, force: bool) -> None:
    """Move each built model folder to its name, all or none. Without ``force`` a name is claimed
    with an exclusive ``mkdir`` (two runs racing for one model: the loser gets one line); with it the
    old folder is set aside in ``stage`` and restored if anything fails."""
    placed: list[tuple[Path, Path | None]] = []
    try:
        for built, target in pairs:
            old = None
            if force and os.path.lexists(target):
                old = stage / f".replaced-{target.name}"
                os.replace(target, old)
            else:
                os.mkdir(target)  # the claim: fails if the folder exists (made by another run meanwhile)
            placed.append((target, old))  # ours now: taken back if anything fails
            os.replace(built, target)  # onto the empty folder just claimed (or the freed name)
    except BaseException as exc:
        for target, old in reversed(placed):
            shutil.rmtree(target, ignore_errors=True)
            if old is not None:
                os.replace(old, target)
        if isinstance(exc, FileExistsError):
            raise OutputExistsError(f"{target} already exists (another run wrote it meanwhile?); pass --force to replace it") from None
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
