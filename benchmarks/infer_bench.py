"""Folder inference speed: ``clsx infer`` (FP32 ONNX on ONNX Runtime) vs a timm ``inference.py``-style
torch-eager DataLoader loop, and vs ONNX Runtime model-only, in one run on the same JPEG photos.

    nice -n 10 python benchmarks/infer_bench.py --out benchmarks/results/infer_bench.md

- Images: >= 64 real JPEG photos made from the photos scikit-image / scikit-learn ship (crops of
  50-100 %, half mirrored, shorter side 256-512 px), written to a temporary folder.
- Model: torchvision resnet50, random weights (speed does not depend on them), exported to FP32 ONNX
  with clsx's exporter when present (else torch.onnx.export plus the clsx metadata).
- ``clsx infer``: :func:`clsx.tools.infer.infer_to_stream` (what the command runs) on the folder, CSV to
  /dev/null, session created and warmed first. The CLI itself, start to exit, is timed once as well.
- Baseline, as timm's ``inference.py`` does it: ``timm.data.create_dataset`` + ``create_loader``
  (torch DataLoader, 2 worker processes, timm's eval transforms with the same size / crop / mean /
  std / interpolation), the same resnet50 in eager mode under ``torch.no_grad()``, softmax top-5.
- Model-only: ONNX Runtime ``run`` on the already-preprocessed tensors of the same images, same batch.

Each repeat runs clsx, model-only, baseline, model-only, clsx; the two ratios are computed within a
repeat (runs close in time see the same load from other processes) and their medians are reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


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


def make_photos(dest: Path, per_photo: int, seed: int = 0) -> list[Path]:
    """JPEG views of the sample photos: crops, mirrors, resizes (deterministic)."""
    from PIL import Image, ImageOps

    from clsx.zoo import samples

    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    out = []
    for photo in samples.photo_paths():
        with Image.open(photo) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        w, h = img.size
        for i in range(per_photo):
            frac = 1.0 if i == 0 else rng.uniform(0.5, 1.0)
            cw, ch = int(w * frac), int(h * frac)
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            view = img.crop((left, top, left + cw, top + ch))
            if i % 2:
                view = ImageOps.mirror(view)
            short = rng.randint(256, 512)
            scale = short / min(view.size)
            view = view.resize((max(1, round(view.width * scale)), max(1, round(view.height * scale))), Image.Resampling.BICUBIC)
            path = dest / f"{photo.stem}_{i:02d}.jpg"
            view.save(path, "JPEG", quality=90)
            out.append(path)
    return out


def export_fp32(loaded, path: Path) -> tuple[Path, str]:
    try:
        from clsx.exporter import export_onnx
    except ImportError:
        export_onnx = None
    if export_onnx is not None:
        return Path(export_onnx(loaded, path, verify=False).path), "clsx.exporter.export_onnx"
    import onnx
    import torch

    from clsx.core.metadata import embed_in_onnx, make_document

    c, h, w = loaded.spec.preprocess.input_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(loaded.module, (torch.zeros(2, c, h, w),), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    model = onnx.load(str(path))
    embed_in_onnx(model, make_document(loaded.spec, artifact="onnx", precision="fp32",
                                       inputs=[{"name": "input", "shape": ["batch", c, h, w], "dtype": "float32"}],
                                       outputs=[{"name": "logits", "shape": ["batch", loaded.spec.num_classes], "dtype": "float32"}]))
    onnx.save(model, str(path))
    return path, "torch.onnx.export (TorchScript) + clsx metadata"


def timm_baseline(module, spec, folder: Path, batch: int, workers: int) -> float:
    """images/s of a timm inference.py-style loop: create_dataset + create_loader + eager model."""
    import timm.data
    import torch

    pre = spec.preprocess
    dataset = timm.data.create_dataset("", root=str(folder))
    loader = timm.data.create_loader(
        dataset, input_size=pre.input_size, batch_size=batch, use_prefetcher=False,
        interpolation=pre.interpolation, mean=pre.mean, std=pre.std, num_workers=workers, crop_pct=pre.crop_pct,
    )
    n = 0
    start = time.perf_counter()
    with torch.no_grad():
        for images, _ in loader:
            out = module(images)
            out.softmax(-1).topk(5)
            n += images.shape[0]
    return n / (time.perf_counter() - start)


def clsx_infer(classifier, folder: Path, batch: int, workers: int | None) -> float:
    from clsx.tools.infer import infer_to_stream

    with open(os.devnull, "w") as sink:
        summary = infer_to_stream(classifier, [folder], sink, topk=5, batch_size=batch, workers=workers)
    assert summary.failed == 0
    return summary.images_per_s


def model_only(runtime, tensors: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(tensors), batch):
        runtime.run(tensors[i : i + batch])
    return len(tensors) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--per-photo", type=int, default=4, help="JPEG views per sample photo (17 photos ship)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loader-workers", type=int, default=2, help="DataLoader worker processes of the baseline (timm's default)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    import clsx
    from clsx.predict.classifier import Classifier
    from clsx.core.preprocess import preprocess_batch

    with tempfile.TemporaryDirectory(prefix="clsx-infer-bench-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "photos"
        paths = make_photos(folder / "all", args.per_photo)
        loaded = clsx.build(args.model)
        onnx_path, exporter = export_fp32(loaded, tmp / f"{args.model}.onnx")
        runtime = clsx.open(onnx_path)
        classifier = Classifier(runtime, batch_size=args.batch)
        runtime.activate()
        tensors = preprocess_batch(sorted(paths), loaded.spec.preprocess)
        runtime.run(tensors[: args.batch])  # warm up both engines
        with torch.no_grad():
            loaded.module(torch.from_numpy(tensors[:2]))

        # Each repeat runs clsx, model-only, baseline, model-only, clsx (A B C B A): the ratios of a
        # repeat compare runs that saw the same background load, and a linear drift cancels out.
        runs: dict[str, list[float]] = {"baseline": [], "clsx": [], "model": []}
        speedups, efficiencies = [], []
        load_before = os.getloadavg()[0]
        for rep in range(args.repeats):
            c1 = clsx_infer(classifier, folder, args.batch, None)
            m1 = model_only(runtime, tensors, args.batch)
            b = timm_baseline(loaded.module, loaded.spec, folder, args.batch, args.loader_workers)
            m2 = model_only(runtime, tensors, args.batch)
            c2 = clsx_infer(classifier, folder, args.batch, None)
            runs["clsx"] += [c1, c2]
            runs["model"] += [m1, m2]
            runs["baseline"].append(b)
            speedups.append((c1 + c2) / 2 / b)
            efficiencies.append((c1 + c2) / (m1 + m2))
            print(f"repeat {rep + 1}: clsx {c1:.2f}/{c2:.2f}, model-only {m1:.2f}/{m2:.2f}, baseline {b:.2f} img/s; "
                  f"speedup {speedups[-1]:.2f}x, end-to-end/model-only {efficiencies[-1]:.2f}", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in runs.items()}
        load_after = os.getloadavg()[0]

        # the command itself, start to exit (interpreter start, imports, session creation included)
        cli_start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "clsx.cli", "infer", str(onnx_path), str(folder), "-b", str(args.batch)],
                              capture_output=True, text=True)
        cli_wall = time.perf_counter() - cli_start
        cli_summary = next((line for line in proc.stderr.splitlines() if "img/s" in line), proc.stderr.strip()[-300:])
        describe = runtime.describe()

    speedup = statistics.median(speedups)
    efficiency = statistics.median(efficiencies)
    lines = [
        f"# clsx infer vs torch-eager DataLoader vs ONNX Runtime model-only ({args.model}, FP32)",
        "",
        f"- command: `nice -n 10 python benchmarks/infer_bench.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`",
        f"- machine: {machine()}",
        f"- torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, timm {__import__('timm').__version__}",
        f"- images: {len(paths)} JPEG photos (views of the {len(paths) // args.per_photo} sample photos, shorter side 256-512 px)",
        f"- model: torchvision {args.model}, random weights; ONNX by {exporter}",
        f"- clsx runtime: {describe}; decode threads: one per core",
        f"- baseline: timm create_dataset + create_loader, {args.loader_workers} DataLoader workers, torch eager, {torch.get_num_threads()} torch threads",
        f"- batch {args.batch}; {args.repeats} repeats, each running clsx, model-only, baseline, model-only, clsx "
        "(ratios are taken within a repeat, so the runs compared saw the same background load; medians reported)",
        "",
        "| pipeline | images/s (median) | runs |",
        "|---|---:|---|",
        f"| timm inference.py-style torch eager + DataLoader | {med['baseline']:.2f} | {', '.join(f'{v:.2f}' for v in runs['baseline'])} |",
        f"| `clsx infer` (ONNX Runtime, end to end) | {med['clsx']:.2f} | {', '.join(f'{v:.2f}' for v in runs['clsx'])} |",
        f"| ONNX Runtime model-only (tensors ready) | {med['model']:.2f} | {', '.join(f'{v:.2f}' for v in runs['model'])} |",
        "",
        f"- **clsx infer / torch-eager baseline: {speedup:.2f}x** (target >= 1.5x); per repeat: "
        + ", ".join(f"{v:.2f}" for v in speedups),
        f"- **clsx infer end-to-end / model-only: {efficiency:.2f}** (target >= 0.85); per repeat: "
        + ", ".join(f"{v:.2f}" for v in efficiencies),
        f"- 1-minute load average before / after measuring (other processes share these cores): "
        f"{load_before:.1f} / {load_after:.1f}",
        f"- the CLI, start to exit (`clsx infer {args.model}.onnx photos/ -b {args.batch}`): {cli_wall:.1f} s wall for "
        f"{len(paths)} images, exit {proc.returncode}; its summary: `{cli_summary}`",
        "",
    ]
    text = "\n".join(lines)
    emit(text, args.out)


if __name__ == "__main__":
    main()
