"""INT8 calibration cost: resnet50, 512 images, wall time and peak memory of `clsx calib` (issue 4).

    python benchmarks/calib_bench.py --out benchmarks/results/calib_bench.md

Each configuration runs `clsx calib` in its own process (exactly the user's command), so its peak
resident memory (``ru_maxrss`` of the child) is the command's own. The FP32 graph is torchvision
``resnet50`` with random weights (cost does not depend on the weights); the images are JPEG views of
the 17 photos scikit-image / scikit-learn ship, enough of them for 512 calibration images plus the
held-out split. Running the same method at 128 and 512 images shows whether memory grows with N
(it must not: batches are streamed and the calibrator reduces them every few batches).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import emit  # noqa: E402


def log(msg: str) -> None:
    print(f"[calib_bench] {msg}", file=sys.stderr, flush=True)


# A one-line parent per run: its RUSAGE_CHILDREN peak is exactly that run's peak resident memory.
_MEASURE = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
            "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def run_child(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``cmd`` run in its own process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    kb = next(int(line.split()[1]) for line in reversed(proc.stderr.splitlines()) if line.startswith("MAXRSS_KB"))
    return wall, kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--runs", default="entropy:128,entropy:512,minmax:512", help="METHOD:N, comma-separated")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from clsx.zoo import samples, zoo
    from clsx.tools.bench import machine_info
    from clsx.exporter import export_onnx

    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="clsx-calib-bench-") as tmp:
        tmp = Path(tmp)
        photos = samples.photo_paths()
        need = max(int(r.split(":")[1]) for r in args.runs.split(",")) + 64
        images = tmp / "images"
        samples.write_photo_variants(images, photos, per_photo=-(-need // len(photos)), seed=0)
        n_images = len(list(images.iterdir()))
        log(f"{n_images} images; exporting {args.model}")
        fp32 = export_onnx(zoo.build(args.model), tmp / "model.onnx", verify=False).path
        for run in args.runs.split(","):
            method, num = run.split(":")
            out = tmp / f"{method}{num}.int8.onnx"
            cmd = [sys.executable, "-m", "clsx", "calib", str(fp32), str(images), "-o", str(out), "--method", method,
                   "--num", num, "--batch", str(args.batch), "--eval-num", "64"]
            log(" ".join(cmd[2:]))
            wall, rss = run_child(cmd)
            rows.append((method, int(num), wall, rss))
            log(f"{method} {num}: {wall:.1f} s, peak RSS {rss:.0f} MiB")
    m = machine_info()
    lines = [
        "# INT8 calibration cost (`clsx calib`)",
        "",
        f"- command: `python benchmarks/calib_bench.py {' '.join(sys.argv[1:])}`",
        f"- machine: {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['logical_cores']} logical cores, {m['os']}, Python {m['python']}; "
        f"shared with other jobs: 1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
        f"- model: torchvision {args.model} FP32 ONNX (random weights); images: {n_images} JPEG views of the 17 sample photos; "
        f"batch {args.batch}; each run is `clsx calib MODEL IMAGES --method M --num N --eval-num 64` in its own process "
        "(wall time includes Python start-up, graph preparation, calibration, bias correction, quantization and the "
        "64-image held-out FP32/INT8 comparison)",
        "- target (issue 4): entropy on 512 images <= 90 s, memory bounded",
        "",
        "| method | images | wall s | peak RSS MiB |",
        "|---|---:|---:|---:|",
    ] + [f"| {meth} | {n} | {w:.1f} | {r:.0f} |" for meth, n, w, r in rows] + [""]
    text = "\n".join(lines)
    emit(text, args.out)


if __name__ == "__main__":
    main()
