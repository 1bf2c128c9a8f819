"""The C++ library against the Python path: preprocessing, and classifying a folder end to end.

    nice -n 10 python benchmarks/cpp_bench.py --out benchmarks/results/cpp_bench.md

Needs the C++ build (``cmake -S cpp -B build/cpp && cmake --build build/cpp -j2``; the tests in
tests/cpp do it) and the cached lite0 artifacts of tests/cpp (``build/cpp-artifacts/*/lite0.{onnx,pt2}``;
any ``clsx export timm:tf_efficientnet_lite0 --weights W --aoti`` output can be given with --pt2/--onnx).

- Images: at least --images (default 256; 17 photos x 16 views = 272) real JPEG views (shorter side 320 px) written by :func:`clsx.zoo.samples.write_photo_variants`.
- preprocess: ``clsx_preprocess_dump`` (one process, single-threaded, decode + resize + crop +
  normalize, tensors written to a file) against :func:`clsx.core.preprocess.preprocess` in one Python
  thread, both with the lite0 spec (bicubic 256 -> 224); process start included for C++.
- classify: ``clsx_classify lite0.pt2 DIR`` (AOTInductor CPU, batch 32, single-threaded decode)
  against ``clsx infer lite0.onnx DIR`` (ONNX Runtime, threaded decode) as subprocesses, CSV to a
  file; wall time including process start and model load. Rows are compared (same paths and top-5).
Median of ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", type=Path, default=REPO / "build" / "cpp")
    ap.add_argument("--pt2", type=Path, default=None)
    ap.add_argument("--onnx", type=Path, default=None)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from clsx.zoo import samples
    from clsx.core.metadata import read_metadata, spec_of
    from clsx.core.preprocess import preprocess

    cached = sorted((REPO / "build" / "cpp-artifacts").glob("*/lite0.pt2"), key=lambda p: p.stat().st_mtime)
    pt2 = args.pt2 or (cached[-1] if cached else None)
    onnx = args.onnx or (pt2.with_suffix(".onnx") if pt2 else None)
    if pt2 is None or not pt2.exists() or onnx is None or not onnx.exists():
        sys.exit("no lite0.pt2/lite0.onnx: run `python -m pytest tests/cpp` first or pass --pt2/--onnx")
    spec = spec_of(read_metadata(pt2)).preprocess
    with tempfile.TemporaryDirectory(prefix="clsx-cpp-bench-") as tmp:
        folder = Path(tmp) / "images"
        photos = samples.photo_paths()
        per = -(-args.images // len(photos))
        images = samples.write_photo_variants(folder, photos, per_photo=per)  # all of them are classified below
        doc = Path(tmp) / "doc.json"
        doc.write_text(json.dumps(read_metadata(pt2)))
        dump = [str(args.build / "clsx_preprocess_dump"), str(doc), str(Path(tmp) / "t.bin"), *map(str, images)]
        t_cpp_pre = timed(lambda: subprocess.run(dump, check=True), args.repeats)
        t_py_pre = timed(lambda: [preprocess(p, spec) for p in images], args.repeats)

        cpp_csv, py_csv = Path(tmp) / "cpp.csv", Path(tmp) / "py.csv"

        def run_cpp() -> None:
            with open(cpp_csv, "w") as f:
                subprocess.run([str(args.build / "clsx_classify"), str(pt2), str(folder)], check=True, stdout=f, stderr=subprocess.DEVNULL)

        def run_py() -> None:
            subprocess.run([sys.executable, "-m", "clsx.cli", "-q", "infer", str(onnx), str(folder), "-o", str(py_csv), "--force"],
                           check=True, stderr=subprocess.DEVNULL)

        t_cpp = timed(run_cpp, args.repeats)
        t_py = timed(run_py, args.repeats)
        cpp_rows = list(csv.reader(cpp_csv.open()))
        py_rows = list(csv.reader(py_csv.open()))
        same = [r[0] for r in cpp_rows] == [r[0] for r in py_rows] and all(
            c[1:16:3] == p[1:16:3] for c, p in zip(cpp_rows[1:], py_rows[1:]))
    n = len(images)
    lines = [
        "# C++ library vs Python: preprocessing and folder classification",
        "",
        f"Machine: {machine()} (shared with other work). Command: `nice -n 10 python benchmarks/cpp_bench.py "
        f"--out benchmarks/results/cpp_bench.md` (images {n}, median of {args.repeats} after a warm-up).",
        f"Model: timm tf_efficientnet_lite0, real ImageNet weights, FP32; preprocessing {spec.interpolation} "
        f"{spec.resize_size} -> {spec.input_size[1]}x{spec.input_size[2]}.",
        "",
        "| what | C++ | Python | C++ / Python time |",
        "|---|---|---|---|",
        f"| preprocess {n} JPEGs (1 thread) | {t_cpp_pre:.2f} s ({n / t_cpp_pre:.0f} img/s) | {t_py_pre:.2f} s ({n / t_py_pre:.0f} img/s) | {t_cpp_pre / t_py_pre:.2f} |",
        f"| classify the folder (process wall time) | {t_cpp:.2f} s, clsx_classify lite0.pt2 (AOTInductor) | {t_py:.2f} s, clsx infer lite0.onnx (ONNX Runtime) | {t_cpp / t_py:.2f} |",
        "",
        f"Same paths and top-5 indices in both CSVs: {'yes' if same else 'NO'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
