"""``clsx bench``: latency and throughput of several artifacts side by side, model-only and end to end.

- **Model-only**: :meth:`Runtime.run` on tensors prepared beforehand (the real photos' tensors when
  images are given, else seeded random ones: speed does not depend on the pixels). One call is one
  sample; latency percentiles are over calls, throughput = images / summed call time. A call takes a
  host NCHW float32 batch and returns host logits, so GPU timings include the copies each way.
- **End to end** (with images): the ``clsx infer`` pipeline (:func:`clsx.predict.classifier.Classifier.predict_batches`:
  lazy listing, decode + preprocess in worker threads, run, softmax top-k) over the whole image
  list. One pass is one sample of throughput; latency percentiles are over the intervals between
  consecutive batches coming out of the pipeline.
- **Fair ratios**: artifacts are *interleaved*. Each batch size is measured in ``rounds``; in every
  round each artifact gets its share of calls (or seconds), in an order rotated round by round, so
  every artifact sees the same background load and drift. Per-round throughputs are kept
  (``round_throughputs``) so ratios can be taken within a round and their median reported.
- **GPU timing**: when CUDA is in use in this process (torch runtimes on CUDA, TensorRT engines,
  which run on torch CUDA tensors) the device is synchronized before and after every timed call,
  so a call's time covers its kernels. ONNX Runtime's CUDA provider returns host arrays, which
  already waits for its kernels.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from clsx.core.errors import ClsxError, SpecError
from clsx.core.machine import cpu_cores
from clsx.runtimes.base import Runtime

if TYPE_CHECKING:
    from clsx.tools.parity import Target
    from clsx.core.spec import InputFormat, PreprocessSpec

log = logging.getLogger(__name__)

MODES = ("model", "e2e")


class BenchError(ClsxError):
    """A benchmark that cannot be run as asked."""


@dataclass(frozen=True)
class BenchResult:
    """One artifact at one batch size in one mode."""

    target: str
    mode: str  # "model" (tensors ready) | "e2e" (decode + preprocess + run + top-k)
    batch: int
    samples: int  # timed calls (model) or batches out of the pipeline (e2e)
    images: int  # images processed while timed
    seconds: float  # timed seconds
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float  # images per second
    round_throughputs: tuple[float, ...] = ()  # images/s per interleaving round
    relative: float | None = None  # throughput / the first artifact's at the same mode and batch
    synchronized: bool = False  # CUDA synchronized around each timed call

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["round_throughputs"] = list(self.round_throughputs)
        return d


@dataclass(frozen=True)
class BenchReport:
    results: tuple[BenchResult, ...]
    runtimes: Mapping[str, str]  # target -> what actually ran
    config: Mapping[str, Any]
    machine: Mapping[str, Any] = field(default_factory=dict)

    def get(self, target: str, mode: str, batch: int) -> BenchResult:
        for r in self.results:
            if (r.target, r.mode, r.batch) == (target, mode, batch):
                return r
        raise KeyError((target, mode, batch))

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (stable keys)."""
        return {
            "machine": dict(self.machine),
            "config": dict(self.config),
            "runtimes": dict(self.runtimes),
            "results": [r.to_dict() for r in self.results],
        }

    def format_table(self) -> str:
        head = ["artifact", "mode", "batch", "samples", "p50_ms", "p90_ms", "p99_ms", "img_per_s", "vs_first"]
        rows = [[r.target, r.mode, str(r.batch), str(r.samples), f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}",
                 f"{r.throughput:.2f}", f"{r.relative:.2f}x" if r.relative is not None else "-"] for r in self.results]
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *rows]) + "\n"


# ---------------------------------------------------------------------------------------------
# Timing


def cuda_in_use() -> bool:
    """Whether this process has initialized CUDA through torch (without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:
        return False


def cuda_synchronize() -> None:
    """Wait for every kernel queued on the current CUDA device."""
    import torch

    torch.cuda.synchronize()


def timed_call(fn: Callable[[], Any], sync: Callable[[], None] | None) -> float:
    """Seconds one call takes; with ``sync``, queued GPU work is drained before the clock starts and
    the call's own GPU work before it stops."""
    if sync is not None:
        sync()
    t0 = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - t0


def percentiles_ms(seconds: Sequence[float]) -> tuple[float, float, float, float]:
    """p50, p90, p99 and mean of ``seconds``, in milliseconds (linear interpolation)."""
    arr = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return float(p50), float(p90), float(p99), float(arr.mean())


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """``items`` rotated left by ``shift``: round r starts with artifact r, so none is always first."""
    if not items:
        return []
    s = shift % len(items)
    return list(items[s:]) + list(items[:s])


def split_iters(iters: int, rounds: int) -> list[int]:
    """``iters`` calls spread over ``rounds`` as evenly as possible (earlier rounds get the remainder)."""
    base, extra = divmod(iters, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


# ---------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class _Art:
    name: str
    runtime: Runtime
    owned: bool
    pre: "PreprocessSpec"
    sync: Callable[[], None] | None = None

    @property
    def key(self) -> tuple[Any, Any]:
        """What its model-only inputs depend on: preprocessing and the input's format."""
        return self.pre, self.runtime.input_format


def _inputs(pre: "PreprocessSpec", batch: int, tensors: np.ndarray | None, seed: int = 0, fmt: Any = None) -> np.ndarray:
    """A batch for model-only timing: real image tensors repeated to fill it, else seeded noise (in
    ``fmt``: the input's layout and dtype; NCHW float32 by default)."""
    from clsx.core.spec import FLOAT_NCHW

    if tensors is not None and len(tensors):
        reps = math.ceil(batch / len(tensors))
        return np.ascontiguousarray(np.concatenate([tensors] * reps)[:batch])
    fmt = fmt or FLOAT_NCHW
    rng = np.random.default_rng(seed)
    shape = fmt.batch_shape(batch, pre.input_size)
    if fmt.dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.standard_normal(shape, dtype=np.float32).astype(fmt.dtype)


def run_bench(
    targets: Sequence["Target"],
    *,
    batches: Sequence[int] = (1, 8, 32),
    warmup: int = 3,
    iters: int | None = None,
    seconds: float | None = None,
    rounds: int = 5,
    images: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    e2e_batches: Sequence[int] | None = None,
    e2e_passes: int | None = None,
    max_images: int | None = None,
    workers: int | None = None,
    device: str | None = None,
    model_opts: Mapping[str, Any] | None = None,
    graph_opts: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
) -> BenchReport:
    """Benchmark ``targets`` side by side (see the module docstring).

    ``iters``: timed calls per artifact and batch size; ``seconds``: timed seconds per artifact and
    batch size instead (at least one call per round); neither: ``seconds=3``. ``images``: files or
    folders for the end-to-end mode and for model-only input tensors. ``e2e_batches`` (default
    ``batches``), ``e2e_passes`` (default ``rounds``) passes over the images per artifact,
    ``max_images`` caps the images used. ``modes`` picks ``model`` and/or ``e2e``.
    """
    from clsx.tools.parity import open_target, target_name

    if not targets:
        raise BenchError("give at least one artifact to benchmark")
    if names is not None and len(names) != len(targets):
        raise SpecError("names must match the targets one to one")
    seconds = _check_settings(iters, seconds, rounds, warmup, modes)
    batches = sorted(set(int(b) for b in batches))
    if not batches or batches[0] < 1:
        raise SpecError(f"batch sizes must be at least 1; got {list(batches)}")
    paths = _bench_images(images, max_images) if images is not None else []

    arts: list[_Art] = []
    try:
        for i, t in enumerate(targets):
            rt, owned = open_target(t, device=device, model_opts=model_opts, graph_opts=graph_opts)
            arts.append(_Art(names[i] if names else target_name(t), rt, owned, _preprocess_of(rt, bool(paths))))
        for a in arts:
            a.runtime.activate()
            log.info("%s: %s", a.name, a.runtime.describe())
        results: list[BenchResult] = []
        if "model" in modes:
            tensors = _image_tensors(arts, paths, max(batches))
            for b in batches:
                results += _bench_model(arts, b, tensors, warmup, iters, seconds, rounds)
        if "e2e" in modes and paths:
            for b in sorted(set(e2e_batches or batches)):
                results += _bench_e2e(arts, b, paths, warmup, e2e_passes or rounds, workers)
        runtimes = {a.name: a.runtime.describe() for a in arts}
    finally:
        for a in arts:
            if a.owned:
                a.runtime.deactivate()
    config = {
        "batches": list(batches), "e2e_batches": sorted(set(e2e_batches or batches)) if paths and "e2e" in modes else [],
        "warmup": warmup, "iters": iters, "seconds": seconds, "rounds": rounds, "images": len(paths),
        "e2e_passes": (e2e_passes or rounds) if paths and "e2e" in modes else 0,
        "workers": workers or cpu_cores(), "device": device or "auto",
    }
    return BenchReport(results=tuple(_with_relative(results)), runtimes=runtimes, config=config, machine=machine_info())


def _preprocess_of(runtime: Any, images: bool) -> "PreprocessSpec":
    """The runtime's preprocessing; for model-only timing of a graph that does not say (a foreign ONNX
    without --preset/flags), a spec of its own input size is enough: the inputs are noise."""
    from clsx.core.metadata import PreprocessUnknownError
    from clsx.core.spec import PreprocessSpec

    try:
        return runtime.spec.preprocess
    except PreprocessUnknownError:
        shape = runtime.inputs[0].shape
        chw = runtime.input_format.chw(tuple(shape[1:])) if len(shape) == 4 else ()
        if images or not all(isinstance(d, int) for d in chw):
            raise
        log.info("%s: no preprocessing given; model-only timing on noise inputs of its size", runtime.target)
        return PreprocessSpec(input_size=chw, resize_size=max(chw[1:]))


def _check_settings(iters: int | None, seconds: float | None, rounds: int, warmup: int, modes: Sequence[str]) -> float | None:
    """Validate the timing settings; returns ``seconds`` (3 when neither it nor ``iters`` is given)."""
    if iters is not None and seconds is not None:
        raise SpecError("give --iters or --seconds, not both")
    if iters is None and seconds is None:
        seconds = 3.0
    if (iters is not None and iters < 1) or (seconds is not None and seconds <= 0) or rounds < 1 or warmup < 0:
        raise SpecError("iters, seconds and rounds must be positive, warmup not negative")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SpecError(f"unknown mode(s) {unknown}: use {', '.join(MODES)}")
    return seconds


def _bench_images(images: str | os.PathLike | Iterable[str | os.PathLike], max_images: int | None) -> list[Path]:
    """The first ``max_images`` images under ``images`` (listing order)."""
    from clsx.predict.listing import iter_image_paths

    roots = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    paths: list[Path] = []
    for p in iter_image_paths(*roots):
        paths.append(p)
        if max_images is not None and len(paths) >= max_images:
            break
    if not paths:
        raise BenchError(f"no images found under {', '.join(map(os.fspath, roots))}")
    return paths


def _image_tensors(arts: list[_Art], paths: list[Path], count: int) -> dict[Any, np.ndarray | None]:
    """Preprocessed tensors of the first images (per distinct spec and input format) for model-only inputs."""
    from clsx.core.preprocess import preprocess

    out: dict[Any, np.ndarray | None] = {}
    for a in arts:
        if a.key in out:
            continue
        good = []
        for p in paths:
            try:
                good.append(preprocess(p, a.pre, a.runtime.input_format))
            except ClsxError as exc:
                log.warning("%s", exc)
            if len(good) >= count:
                break
        out[a.key] = np.stack(good) if good else None
    return out


def _bench_model(arts: list[_Art], batch: int, tensors: Mapping[Any, np.ndarray | None], warmup: int,
                 iters: int | None, seconds: float | None, rounds: int) -> list[BenchResult]:
    inputs = {id(a): _inputs(a.pre, batch, tensors.get(a.key), fmt=a.runtime.input_format) for a in arts}
    for a in arts:
        for _ in range(max(warmup, 1)):  # at least one untimed call: lazy init must not be timed
            a.runtime.run(inputs[id(a)])
    sync = cuda_synchronize if cuda_in_use() else None
    for a in arts:
        a.sync = sync
    n_rounds = min(rounds, iters) if iters is not None else rounds
    quota = split_iters(iters, n_rounds) if iters is not None else None
    times: dict[int, list[float]] = {id(a): [] for a in arts}
    per_round: dict[int, list[float]] = {id(a): [] for a in arts}
    for r in range(n_rounds):
        for a in rotated(arts, r):
            x = inputs[id(a)]
            spent: list[float] = []
            while True:
                spent.append(timed_call(lambda: a.runtime.run(x), a.sync))
                if quota is not None and len(spent) >= quota[r]:
                    break
                if seconds is not None and sum(spent) >= seconds / n_rounds:
                    break
            times[id(a)] += spent
            per_round[id(a)].append(batch * len(spent) / sum(spent))
        log.debug("model-only batch %d, round %d/%d done", batch, r + 1, n_rounds)
    out = []
    for a in arts:
        t = times[id(a)]
        p50, p90, p99, mean = percentiles_ms(t)
        out.append(BenchResult(a.name, "model", batch, len(t), batch * len(t), sum(t), p50, p90, p99, mean,
                               batch * len(t) / sum(t), tuple(per_round[id(a)]), synchronized=a.sync is not None))
        log.info("%s model-only batch %d: p50 %.2f ms, %.2f img/s", a.name, batch, p50, out[-1].throughput)
    return out


def _bench_e2e(arts: list[_Art], batch: int, paths: list[Path], warmup: int, passes: int,
               workers: int | None) -> list[BenchResult]:
    from clsx.predict.classifier import Classifier

    clfs = {id(a): Classifier(a.runtime, batch_size=batch, workers=workers) for a in arts}
    if warmup:
        for a in arts:  # one batch through the pipeline: threads, runtime and caches warm
            for _ in clfs[id(a)].predict_batches(paths[:batch], topk=5, batch_size=batch, workers=workers):
                pass
    gaps: dict[int, list[float]] = {id(a): [] for a in arts}
    per_pass: dict[int, list[float]] = {id(a): [] for a in arts}
    counts: dict[int, int] = {id(a): 0 for a in arts}
    total: dict[int, float] = {id(a): 0.0 for a in arts}
    for r in range(passes):
        for a in rotated(arts, r):
            n, failed = 0, 0
            t0 = last = time.perf_counter()
            for preds in clfs[id(a)].predict_batches(paths, topk=5, batch_size=batch, workers=workers):
                now = time.perf_counter()
                gaps[id(a)].append(now - last)
                last = now
                n += len(preds)
                failed += sum(not p.ok for p in preds)
            elapsed = time.perf_counter() - t0
            if failed and r == 0:
                log.warning("%s: %d of %d images could not be read (timed all the same, as clsx infer would)", a.name, failed, n)
            counts[id(a)] += n
            total[id(a)] += elapsed
            per_pass[id(a)].append(n / elapsed)
        log.debug("end-to-end batch %d, pass %d/%d done", batch, r + 1, passes)
    out = []
    for a in arts:
        p50, p90, p99, mean = percentiles_ms(gaps[id(a)])
        out.append(BenchResult(a.name, "e2e", batch, len(gaps[id(a)]), counts[id(a)], total[id(a)], p50, p90, p99, mean,
                               counts[id(a)] / total[id(a)], tuple(per_pass[id(a)]), synchronized=False))
        log.info("%s end-to-end batch %d: %.2f img/s", a.name, batch, out[-1].throughput)
    return out


def _with_relative(results: list[BenchResult]) -> list[BenchResult]:
    """Throughput relative to the first artifact's at the same mode and batch size."""
    from dataclasses import replace

    first: dict[tuple[str, int], float] = {}
    out = []
    for r in results:
        base = first.setdefault((r.mode, r.batch), r.throughput)
        out.append(replace(r, relative=r.throughput / base if base > 0 else None))
    return out


def ratio_per_round(a: BenchResult, b: BenchResult) -> list[float]:
    """Throughput ratios a/b taken within each interleaving round (same background load)."""
    return [x / y for x, y in zip(a.round_throughputs, b.round_throughputs) if y > 0]


def median_ratio(a: BenchResult, b: BenchResult) -> float:
    return statistics.median(ratio_per_round(a, b))


# ---------------------------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The vector extensions that decide CPU INT8/FP16 speed (AVX2, AVX-512, VNNI, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    keep = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16")
    return [f for f in keep if f in flags]


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, load, OS, Python and the libraries in use."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": cpu_cores(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for mod in ("torch", "onnxruntime", "tensorrt", "tensorrt_rtx", "timm"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", "?")
    if cuda_in_use():
        import torch

        info["gpu"] = torch.cuda.get_device_name()
    return info
