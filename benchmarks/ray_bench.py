"""Ray Data batch inference (``clsx infer --ray``, 2 workers) vs local ``clsx infer`` on one machine.

    nice -n 10 python benchmarks/ray_bench.py --out benchmarks/results/ray_bench.md

- Images: 512 real JPEG views (shorter side 256 px) of the photos scikit-image / scikit-learn ship,
  written by :func:`clsx.zoo.samples.write_photo_variants` to a temporary folder.
- Model: timm tf_efficientnet_lite0 with its real ImageNet weights (clsx's demo model), FP32 ONNX.
- local: :func:`clsx.tools.infer.run_infer` (what ``clsx infer`` runs), CSV to /dev/null, batch 32,
  decode threads one per core, ONNX Runtime with one intra-op thread per core.
- ray (warm cluster): :func:`clsx.scale.ray_infer.run_ray_infer` on a local Ray instance started
  beforehand (``ray.init(num_cpus=<cores>)``), 2 workers: includes dataset planning, actor start,
  model load in each actor, reading, inference, and the ordered write on the driver.
- ray (cold): the same call with no Ray running, so it starts (and stops) a local Ray instance itself;
  what a one-off ``clsx infer --ray`` on a laptop costs.
- Both outputs are compared row for row (they must be equal).

After one discarded warm-up run, each repeat runs local, ray warm, ray cold, local; a repeat's local time
is the mean of its two local runs, ratios are taken within a repeat and their medians reported.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import emit  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def make_images(dest: Path, count: int) -> list[Path]:
    from clsx.zoo import samples

    photos = samples.photo_paths()
    paths = samples.write_photo_variants(dest, photos, per_photo=math.ceil(count / len(photos)), size=256)
    for extra in paths[count:]:
        extra.unlink()
    return paths[:count]


class _Clocked(io.StringIO):
    """A stdout that notes when the first data row (after the header) arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.first_row: float | None = None

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.first_row is None and self.getvalue().count("\n") >= 2:
            self.first_row = time.perf_counter()
        return n


def timed(fn, *args, **kwargs) -> tuple[float, float, str]:
    """(wall seconds, seconds to the first row, the rows)."""
    out = _Clocked()
    start = time.perf_counter()
    fn(*args, stdout=out, **kwargs)
    end = time.perf_counter()
    return end - start, (out.first_row or end) - start, out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2, help="Ray actors (classifier workers)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, help="write the Markdown report here (default: stdout)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import onnxruntime
    import ray

    import clsx
    from clsx.zoo import samples
    from clsx.exporter import export_onnx
    from clsx.tools.infer import run_infer
    from clsx.core.machine import cpu_cores
    from clsx.scale.ray_infer import plan_resources, run_ray_infer

    cores = cpu_cores()
    with tempfile.TemporaryDirectory(prefix="clsx-ray-bench-") as tmp:
        root = Path(tmp)
        folder = root / "images"
        make_images(folder, args.images)
        loaded = clsx.build(samples.DEMO_MODEL, weights=samples.efficientnet_lite0_weights())
        model = export_onnx(loaded, root / "lite0.onnx", verify=False).path

        common = dict(topk=5, batch_size=args.batch, progress=False)
        local_s, ray_warm_s, ray_cold_s, warm_ratio, cold_ratio = [], [], [], [], []
        first = {"local": [], "warm": [], "cold": []}
        load_before = os.getloadavg()[0]
        timed(run_infer, str(model), [folder], **common)  # warm-up: page cache, ORT's first session
        for r in range(args.repeats):
            t_local_a, f_local_a, rows_local = timed(run_infer, str(model), [folder], **common)
            ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="warning")
            try:
                t_warm, f_warm, rows_warm = timed(run_ray_infer, str(model), [folder], num_workers=args.workers, **common)
            finally:
                ray.shutdown()
            t_cold, f_cold, rows_cold = timed(run_ray_infer, str(model), [folder], num_workers=args.workers, **common)
            t_local_b, f_local_b, rows_local_b = timed(run_infer, str(model), [folder], **common)
            t_local, f_local = (t_local_a + t_local_b) / 2, (f_local_a + f_local_b) / 2  # local runs bracket the Ray runs
            if not rows_local == rows_local_b == rows_warm == rows_cold:
                sys.exit("Ray rows differ from local clsx infer rows")
            local_s.append(t_local), ray_warm_s.append(t_warm), ray_cold_s.append(t_cold)
            first["local"].append(f_local), first["warm"].append(f_warm), first["cold"].append(f_cold)
            warm_ratio.append(t_warm / t_local), cold_ratio.append(t_cold / t_local)
            print(f"repeat {r + 1}: local {t_local:.1f} s, ray warm {t_warm:.1f} s, ray cold {t_cold:.1f} s", file=sys.stderr)
        load_after = os.getloadavg()[0]

    n = args.images
    rate = lambda secs: [n / s for s in secs]  # noqa: E731
    med = statistics.median
    res = plan_resources(cores, 0, num_workers=args.workers)
    report = [
        f"# Ray Data ({args.workers} workers) vs local `clsx infer` ({n} images, tf_efficientnet_lite0 FP32 ONNX)",
        "",
        f"- command: `nice -n 10 python benchmarks/ray_bench.py{' --repeats ' + str(args.repeats) if args.repeats != 3 else ''} --out {args.out or '-'}`",
        f"- machine: {machine()}",
        f"- ray {ray.__version__}, onnxruntime {onnxruntime.__version__}, clsx {clsx.__version__}",
        f"- images: {n} JPEG views of the {len(samples.photo_paths())} sample photos, shorter side 256 px; batch {args.batch}, top-5 CSV",
        f"- local: `clsx infer` pipeline (run_infer), {cores} decode threads, ONNX Runtime {cores} intra-op threads",
        f"- ray: `clsx infer --ray --num-workers {args.workers}` pipeline (run_ray_infer): {res.describe()}; "
        f"ONNX Runtime {max(1, int(res.cpus_per_worker))} intra-op thread per actor",
        "- Ray Data fuses the read step into the actor pool when both ask for the same CPU share and pool size, as here "
        "(its execution plan: `ActorPoolMapOperator[MapBatches(read_batch)->MapBatches(ClassifierActor)]`); "
        "with GPU workers, or other shares, reading stays a separate task pool",
        "- ray warm: a local Ray instance already running (actor start and model load per run still counted); "
        "ray cold: the call starts and stops its own local Ray instance",
        f"- rows: Ray output identical to local output in every run ({n} rows + header)",
        "",
        "| pipeline | images/s end to end (median) | wall s per run | s to the first row (median) |",
        "|---|---:|---|---:|",
    ]
    for label, walls, key in (("local `clsx infer` (mean of the 2 runs around the Ray runs)", local_s, "local"),
                              (f"Ray Data, {args.workers} workers, warm cluster", ray_warm_s, "warm"),
                              (f"Ray Data, {args.workers} workers, cold start", ray_cold_s, "cold")):
        report.append(f"| {label} | {med(rate(walls)):.1f} | {', '.join(f'{s:.1f}' for s in walls)} | {med(first[key]):.1f} |")
    report += [
        "",
        f"- **overhead ratio, Ray warm / local wall time: {med(warm_ratio):.2f}x** (per repeat: {', '.join(f'{x:.2f}' for x in warm_ratio)})",
        f"- **overhead ratio, Ray cold / local wall time: {med(cold_ratio):.2f}x** (per repeat: {', '.join(f'{x:.2f}' for x in cold_ratio)})",
        "- time to the first row: Ray returns rows in sorted order, so the first row waits for the first batch "
        "*and* for actor start and model load; later batches were already being processed meanwhile",
        f"- 1-minute load average before / after measuring (other processes share these cores): {load_before:.1f} / {load_after:.1f}",
    ]
    text = "\n".join(report) + "\n"
    emit(text, args.out)


if __name__ == "__main__":
    main()
