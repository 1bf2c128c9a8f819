"""Exact preprocessing with and without "resize only what the crop keeps" (issue 19), one thread.

    python benchmarks/crop_resize_bench.py --out benchmarks/results/crop_resize_bench.md

On JPEG views of the sample photos (800x500 landscape and 500x800 portrait, 162 each, the images of
pipeline_bench.py), ``clsx.core.preprocess.preprocess`` to a 224 float tensor for the two common
specs (torchvision 256/224 bilinear, timm lite0 bicubic), timed twice in one process: as it is,
and with the resize step replaced by the plain "resize the whole image, then crop". Rounds
interleave the two; the ratio is taken within a round; medians over rounds. Every tensor of the
two paths is also compared: they must be equal bit for bit.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import numpy as np

    from clsx.core import preprocess as pp
    from clsx.core.spec import PreprocessSpec

    specs = {"256/224 bilinear": PreprocessSpec(),
             "256/224 bicubic (lite0)": PreprocessSpec(interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)}
    crop_only = pp.resize_crop

    def plain(img, size, height, width, interpolation, source=None):
        return pp.center_crop(pp.resize_shorter(img, size, interpolation), height, width)

    with tempfile.TemporaryDirectory() as tmp:
        sets = {"800x500": sorted(make_images(Path(tmp) / "l", 162, (800, 500)).glob("*.jpg")),
                "500x800": sorted(make_images(Path(tmp) / "p", 162, (500, 800)).glob("*.jpg"))}
        rows = []
        for (set_name, paths) in sets.items():
            for spec_name, spec in specs.items():
                for p in paths:  # the same tensors, bit for bit
                    pp.resize_crop = plain
                    ref = pp.preprocess(p, spec)
                    pp.resize_crop = crop_only
                    assert np.array_equal(pp.preprocess(p, spec), ref), p
                rates: dict[str, list[float]] = {"plain": [], "crop": []}
                ratios = []
                for _ in range(args.rounds):
                    for name, fn in (("plain", plain), ("crop", crop_only)):
                        pp.resize_crop = fn
                        t = time.perf_counter()
                        for p in paths:
                            pp.preprocess(p, spec)
                        rates[name].append(len(paths) / (time.perf_counter() - t))
                    ratios.append(rates["crop"][-1] / rates["plain"][-1])
                pp.resize_crop = crop_only
                rows.append((set_name, spec_name, statistics.median(rates["plain"]), statistics.median(rates["crop"]),
                             statistics.median(ratios)))
                print(rows[-1], file=sys.stderr)
    load = os.getloadavg()[0]
    lines = ["# Exact preprocessing: resize only what the crop keeps", "",
             f"Command: `python benchmarks/crop_resize_bench.py --rounds {args.rounds} --out benchmarks/results/crop_resize_bench.md`", "",
             f"One thread, {args.rounds} interleaved rounds, medians; load average at the end {load:.1f} (2 cores, shared). "
             "Every tensor of the two paths compared: equal bit for bit.", "",
             "| images | spec | resize then crop img/s | crop-only resize img/s | ratio (within round) |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c:.1f} | {d:.1f} | {e:.2f}x |" for a, b, c, d, e in rows]
    text = "\n".join(lines) + "\n"
    emit(text, args.out)


if __name__ == "__main__":
    main()
