"""Exact preprocessing, one thread: Pillow vs clsx's native resampler and turbo decode (issue 19).

    python benchmarks/crop_resize_bench.py --out benchmarks/results/crop_resize_bench.md

On JPEG views of the sample photos (the images of pipeline_bench.py: 800x500 landscape and 500x800
portrait, 162 each, and ``--large`` 4000x3000 ones), ``clsx.core.preprocess.preprocess`` to a 224 float
tensor for the two common specs (torchvision 256/224 bilinear, timm lite0 bicubic), timed in one process
with four ways of producing the same pixels:

- ``pillow plain``: Pillow decodes, Pillow resizes the whole image, then the crop (what torchvision does);
- ``pillow crop``: Pillow decodes and runs the first pass whole, the second on the crop only (session 4);
- ``native``: Pillow decodes, the native resampler (``cpp/src/resample.c``) computes only the crop;
- ``native+turbo``: libjpeg-turbo decodes into a reused buffer where the pixels are Pillow's, then the
  native resampler: what ``preprocess`` does by default.

Rounds interleave the four; ratios are taken within a round; medians over rounds. Every tensor of every
path is compared with ``pillow plain`` first: they must be equal bit for bit (the script stops if not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_bench import make_images  # noqa: E402
from results_file import emit  # noqa: E402

PATHS = ("pillow plain", "pillow crop", "native", "native+turbo")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--large", type=int, default=17, help="how many 4000x3000 images (0: none)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import numpy as np

    from clsx.core import preprocess as pp
    from clsx.core.spec import PreprocessSpec

    if pp.resampler() != "native" or pp._turbo is None:
        raise SystemExit("the native resampler and simplejpeg must both be installed to compare them")
    specs = {"256/224 bilinear": PreprocessSpec(),
             "256/224 bicubic (lite0)": PreprocessSpec(interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)}
    crop_only, turbo = pp.resize_crop, pp._turbo

    def plain(img, size, height, width, interpolation, source=None):
        return pp.center_crop(pp.resize_shorter(img, size, interpolation), height, width)

    def use(path: str) -> None:
        os.environ["CLSX_RESAMPLE"] = "pillow" if path.startswith("pillow") else "native"
        pp.resize_crop = plain if path == "pillow plain" else crop_only
        pp._turbo = turbo if path == "native+turbo" else None

    with tempfile.TemporaryDirectory() as tmp:
        sets = {"800x500": sorted(make_images(Path(tmp) / "l", 162, (800, 500)).glob("*.jpg")),
                "500x800": sorted(make_images(Path(tmp) / "p", 162, (500, 800)).glob("*.jpg"))}
        if args.large:
            sets["4000x3000"] = sorted(make_images(Path(tmp) / "L", args.large, (4000, 3000)).glob("*.jpg"))
        rows = []
        for set_name, paths in sets.items():
            for spec_name, spec in specs.items():
                for p in paths:  # the same tensors, bit for bit
                    use("pillow plain")
                    ref = pp.preprocess(p, spec)
                    for path in PATHS[1:]:
                        use(path)
                        if not np.array_equal(pp.preprocess(p, spec), ref):
                            raise SystemExit(f"{path} differs from pillow plain on {p.name} ({spec_name})")
                rates: dict[str, list[float]] = {path: [] for path in PATHS}
                ratios: dict[str, list[float]] = {path: [] for path in PATHS}
                for _ in range(args.rounds):
                    for path in PATHS:
                        use(path)
                        t = time.perf_counter()
                        for p in paths:
                            pp.preprocess(p, spec)
                        rates[path].append(len(paths) / (time.perf_counter() - t))
                    for path in PATHS:
                        ratios[path].append(rates[path][-1] / rates["pillow plain"][-1])
                rows.append((set_name, spec_name, {p: statistics.median(rates[p]) for p in PATHS},
                             {p: statistics.median(ratios[p]) for p in PATHS}))
                print(rows[-1], file=sys.stderr)
        use("native+turbo")
        os.environ.pop("CLSX_RESAMPLE", None)
    load = os.getloadavg()[0]
    lines = ["# Exact preprocessing: Pillow, crop-only, native resampler, turbo decode", "",
             f"Command: `python benchmarks/crop_resize_bench.py --rounds {args.rounds} --large {args.large} "
             "--out benchmarks/results/crop_resize_bench.md`", "",
             f"One thread, {args.rounds} interleaved rounds, medians; load average at the end {load:.1f} (2 cores, shared). "
             "Every tensor of every path compared with `pillow plain` first: equal bit for bit. "
             "img/s per path, and in brackets the ratio to `pillow plain` within a round.", "",
             "| images | spec | " + " | ".join(PATHS) + " |", "|---|---|" + "---|" * len(PATHS)]
    for set_name, spec_name, rate, ratio in rows:
        cells = [f"{rate[p]:.1f}" + ("" if p == "pillow plain" else f" ({ratio[p]:.2f}x)") for p in PATHS]
        lines.append(f"| {set_name} | {spec_name} | " + " | ".join(cells) + " |")
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
