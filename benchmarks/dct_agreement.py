"""Top-1 agreement of DCT-scaled JPEG decoding (``--fast-decode``) with the exact path, on real photos
made camera-sized, with real ImageNet weights (timm tf_efficientnet_lite0, ONNX Runtime CPU).

    python benchmarks/dct_agreement.py --count 600 --out benchmarks/results/dct_agreement.md

- Images: views of the photos scikit-image / scikit-learn ship (crops of 60-100 %, every other one
  mirrored), upscaled with bicubic to ``--size`` (default 4000x3000; every fourth one portrait) and
  saved as JPEG quality 90 in a temporary folder.
- Each image is preprocessed twice with the model's own spec (:func:`clsx.core.preprocess.preprocess`,
  ``fast_decode`` False and True); both batches run through the same FP32 graph; reported: top-1
  agreement, top-5 overlap of the top-1, largest tensor difference, and the decode+preprocess time of
  both paths (interleaved per image, one thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import emit  # noqa: E402


def make_large(dest: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """The camera-size views (every 4th in portrait): pipeline_bench's one view maker."""
    from pipeline_bench import make_images

    make_images(dest, count, size, seed, portrait_every=4)
    return sorted(dest.glob("*.jpg"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--onnx", help="an FP32 lite0 ONNX with real weights (default: exported here)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from clsx.core.preprocess import preprocess
    from clsx.runtimes.registry import open as open_runtime

    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        onnx = args.onnx
        if onnx is None:
            from clsx import zoo
            from clsx.exporter import export_onnx
            from clsx.zoo import samples

            onnx = export_onnx(zoo.build(samples.DEMO_MODEL, weights=samples.efficientnet_lite0_weights()),
                               Path(tmp) / "lite0.onnx", verify=False).path
        t0 = time.perf_counter()
        (Path(tmp) / "img").mkdir()
        paths = make_large(Path(tmp) / "img", args.count, size)
        made = time.perf_counter() - t0
        rt = open_runtime(onnx, backend="onnxrt", device="cpu")
        spec = rt.spec.preprocess
        exact_s = fast_s = 0.0
        agree = in_top5 = 0
        worst = 0.0
        for chunk in range(0, len(paths), 32):
            part = paths[chunk:chunk + 32]
            ex, fa = [], []
            for p in part:
                t = time.perf_counter(); ex.append(preprocess(p, spec)); exact_s += time.perf_counter() - t
                t = time.perf_counter(); fa.append(preprocess(p, spec, fast_decode=True)); fast_s += time.perf_counter() - t
            a, b = rt.run(np.stack(ex)), rt.run(np.stack(fa))
            worst = max(worst, float(np.abs(np.stack(ex) - np.stack(fa)).max() * max(spec.std)))
            top1a, top5b = a.argmax(1), np.argsort(-b, axis=1)[:, :5]
            agree += int((top1a == b.argmax(1)).sum())
            in_top5 += int(sum(t in row for t, row in zip(top1a, top5b)))
        n = len(paths)
        lines = [
            "# DCT-scaled JPEG decode (`--fast-decode`): agreement with the exact path",
            "",
            f"Command: `python benchmarks/dct_agreement.py --count {args.count} --size {args.size}`",
            f"Machine: {os.cpu_count()} logical cores, shared; load average at the end: {os.getloadavg()[0]:.2f}",
            "",
            f"- images: {n} JPEGs of {args.size} (views of the 17 sample photos, bicubic-upscaled; made in {made:.0f} s)",
            f"- model: timm tf_efficientnet_lite0, real ImageNet weights, FP32 ONNX on ONNX Runtime CPU; spec {spec.resize_size}/{spec.input_size[1]} {spec.interpolation}",
            f"- top-1 agreement: **{agree}/{n} = {100.0 * agree / n:.2f} %**; exact top-1 within the fast path's top-5: {in_top5}/{n}",
            f"- largest tensor difference: {worst * 255:.1f}/255 (in [0, 255] pixel units)",
            f"- preprocessing, one thread: exact {1000 * exact_s / n:.1f} ms/image, fast decode {1000 * fast_s / n:.1f} ms/image: "
            f"**{exact_s / fast_s:.1f}x** faster",
        ]
    text = "\n".join(lines) + "\n"
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
