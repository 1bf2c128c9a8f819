"""Does preprocessing keep up with the model? Preprocessing-only, model-only and end-to-end (``clsx infer``'s
pipeline) throughput on ONNX Runtime CPU, for float and uint8-input graphs, today's code vs this one.

    python benchmarks/pipeline_bench.py --quick --baseline /tmp/base19 --out benchmarks/results/pipeline_bench.md

(``--baseline``: a checkout of the code to compare with, e.g. ``git worktree add /tmp/base19 51de88c``.)

- Models: torchvision resnet50 FP32 (random weights: speed does not depend on them), timm
  tf_efficientnet_lite0 FP32 (real ImageNet weights) and its INT8 in ONNX Runtime's CPU layout
  (``clsx calib --for cpu``), each exported twice: float32 NCHW input, and ``--input uint8`` (NHWC
  pixels, normalization inside the graph). Written once into ``--models`` and reused.
- Images: JPEG views (crops, mirrors) of the 17 sample photos, 800x500 (162 images) and 4000x3000
  (``--large`` images), quality 90, in a temporary folder.
- Per measurement a fresh process (``PYTHONPATH`` = this checkout or the baseline) measures, on one
  model and one image set: **preprocessing** img/s on one thread (``clsx.core.preprocess.preprocess`` in
  the graph's input format); **model-only** img/s (``Runtime.run`` on ready batches of 32, ONNX Runtime's
  defaults: 2 intra-op threads, spinning); **end to end** img/s (a fresh session with the pipeline's defaults) (:func:`clsx.tools.infer.infer_to_stream`, what ``clsx infer`` runs: the
  decode-ahead pipeline and CSV rows to /dev/null, session warmed first). Efficiency = end to end /
  (1 / (1/model-only + 1/(preprocessing x cores))): 1.0 is the ceiling when both share the cores.
- Rounds are interleaved (baseline and this code, one configuration after the other) and every
  ratio is taken within a round; medians over rounds are reported. The machine is shared: the load
  average is recorded with each round.
- Thread budget: end to end of the small models with (decode workers, ORT intra-op threads, ORT
  spinning) variants, to choose the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import emit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BATCH = 32


# ---------------------------------------------------------------------------------------------
# worker: runs in a fresh process with PYTHONPATH = the checkout under test


def _worker(cfg: dict) -> dict:
    import numpy as np

    from clsx.core.preprocess import preprocess
    from clsx.predict.classifier import Classifier
    from clsx.runtimes.registry import open as open_runtime
    from clsx.tools.infer import infer_to_stream

    kw = {"threads": cfg.get("threads"), "spin": cfg.get("spin")}
    if cfg.get("fast_decode"):
        kw["preprocess"] = {"fast_decode": True}
    rt = open_runtime(cfg["model"], backend="onnxrt", device="cpu", **{k: v for k, v in kw.items() if v is not None})
    spec, fmt = rt.spec.preprocess, rt.input_format
    paths = sorted(Path(cfg["images"]).glob("*.jpg"))
    out: dict = {}
    if cfg.get("preproc", True):
        preprocess(paths[0], spec, fmt)  # warm imports
        t = time.perf_counter()
        for p in paths:  # steady state: each tensor dropped, as a pipeline does (keeping 162 costs page faults)
            preprocess(p, spec, fmt)
        out["preproc"] = len(paths) / (time.perf_counter() - t)
    tensors = [preprocess(p, spec, fmt) for p in paths[:BATCH]]
    if cfg.get("model_only", True):
        batch = np.stack((tensors * (BATCH // len(tensors) + 1))[:BATCH])
        rt.run(batch)
        n, t = 0, time.perf_counter()
        while n < 4 * BATCH or time.perf_counter() - t < 1.5:
            rt.run(batch)
            n += BATCH
        out["model"] = n / (time.perf_counter() - t)
    rt.deactivate()
    rt = open_runtime(cfg["model"], backend="onnxrt", device="cpu", **{k: v for k, v in kw.items() if v is not None})
    clf = Classifier(rt, batch_size=BATCH, workers=cfg.get("workers"))  # the pipeline's own defaults
    rt.activate()
    clf.classify(np.stack(tensors[:BATCH]), ["warm"] * min(BATCH, len(tensors)), 5)
    with open(os.devnull, "w") as sink:
        summary = infer_to_stream(clf, [cfg["images"]], sink, topk=5, batch_size=BATCH, workers=cfg.get("workers"))
    out["e2e"] = summary.images / summary.seconds
    out["runtime"] = summary.runtime
    import clsx

    out["code"] = str(Path(clsx.__file__).parent.parent)
    rt.deactivate()
    return out


def measure(tree: Path, cfg: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({tree}, {cfg}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# setup


def make_images(dest: Path, count: int, size: tuple[int, int], seed: int = 0, *, portrait_every: int = 0) -> Path:
    """``count`` JPEG views of the sample photos at exactly ``size`` (W, H): seeded crops of 60-100 %, every
    other one mirrored, and (``portrait_every`` N > 0) every Nth one turned to portrait (H, W). Also used by
    dct_agreement.py."""
    import random

    from PIL import Image, ImageOps

    from clsx.zoo import samples

    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    photos = samples.photo_paths()
    for i in range(count):
        src, k = photos[i % len(photos)], i // len(photos)
        with Image.open(src) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        w, h = img.size
        frac = 1.0 if k == 0 else rng.uniform(0.6, 1.0)
        cw, ch = int(w * frac), int(h * frac)
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        view = img.crop((left, top, left + cw, top + ch))
        if k % 2:
            view = ImageOps.mirror(view)
        target = (size[1], size[0]) if portrait_every and i % portrait_every == portrait_every - 1 else size
        ImageOps.fit(view, target, Image.Resampling.BICUBIC).save(dest / f"{src.stem}_{k:03d}.jpg", "JPEG", quality=90)
    return dest


def clsx_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "clsx", *args], check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                   stdout=subprocess.DEVNULL)


def make_models(folder: Path, calib_images: Path) -> dict[str, Path]:
    """The six graphs (exported once; reused when present)."""
    from clsx.zoo import samples

    folder.mkdir(parents=True, exist_ok=True)
    weights = str(samples.efficientnet_lite0_weights())
    models = {}
    for name, source, extra in (("resnet50", "tv:resnet50", ["--random-weights"]), ("lite0", samples.DEMO_MODEL, ["--weights", weights])):
        for fmt, flags in (("float", []), ("uint8", ["--input", "uint8"])):
            path = folder / f"{name}.{fmt}.onnx"
            if not path.exists():
                clsx_cli("export", source, *extra, *flags, "--no-verify", "-o", str(path))
            models[f"{name} FP32 {fmt}"] = path
    for fmt in ("float", "uint8"):
        path = folder / f"lite0.{fmt}.cpu.int8.onnx"
        if not path.exists():
            clsx_cli("calib", str(folder / f"lite0.{fmt}.onnx"), str(calib_images), "--for", "cpu", "--num", "128", "-o", str(path))
        models[f"lite0 INT8 {fmt}"] = path
    return models


# ---------------------------------------------------------------------------------------------
# the run


def efficiency(r: dict, cores: int) -> float:
    return r["e2e"] / (1.0 / (1.0 / r["model"] + 1.0 / (r["preproc"] * cores)))


def run(args: argparse.Namespace) -> str:
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    small = make_images(tmp / "800x500", 162, (800, 500))
    large = make_images(tmp / "4000x3000", args.large if not args.threads_only else 0, (4000, 3000))
    calib = make_images(tmp / "calib", 136, (400, 300), seed=1)
    models = make_models(Path(args.models), calib)
    base = Path(args.baseline) if args.baseline else None

    # (label, images, model key, fast_decode, versions)
    rows = []
    for key in (models if not args.threads_only else ()):
        rows.append(("800x500", small, key, False))
    for key in ("lite0 FP32 float", "lite0 FP32 uint8", "lite0 INT8 uint8") if not args.threads_only else ():
        rows.append(("4000x3000", large, key, False))
        rows.append(("4000x3000 fast decode", large, key, True))
    threads = [(2, 2, True), (2, 2, False), (2, 1, False), (1, 1, False), (1, 2, False)]
    results: dict = {}
    loads = []
    for rnd in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for label, images, key, fast in rows:
            cfg = {"model": str(models[key]), "images": str(images), "fast_decode": fast}
            versions = [("new", REPO)]
            if base is not None and key.endswith("float") and not fast:
                versions.insert(rnd % 2, ("today", base))  # alternate which goes first
            for name, tree in versions:
                r = measure(tree, cfg)
                results.setdefault((label, key, name), []).append(r)
                print(f"round {rnd + 1} {label:22s} {key:18s} {name:5s} preproc {r['preproc']:7.1f} model {r['model']:7.1f} "
                      f"e2e {r['e2e']:7.1f} eff {efficiency(r, cores):.2f}", file=sys.stderr, flush=True)
        for key in ("lite0 FP32 float", "lite0 INT8 uint8", "lite0 INT8 float"):
            for w, t, s in threads:
                cfg = {"model": str(models[key]), "images": str(small), "workers": w, "threads": t, "spin": s,
                       "preproc": False, "model_only": False}
                r = measure(REPO, cfg)
                results.setdefault(("threads", key, (w, t, s)), []).append(r)
                print(f"round {rnd + 1} threads {key} workers {w} ort {t} spin {s}: e2e {r['e2e']:.1f}", file=sys.stderr, flush=True)
    return report(results, rows, models, threads, loads, cores, args, base)


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: dict, rows: list, models: dict, threads: list, loads: list, cores: int, args, base) -> str:
    cmd = "python benchmarks/pipeline_bench.py" + (" --quick" if args.quick else "") + (f" --rounds {args.rounds}" if not args.quick else "") \
        + (" --threads-only" if args.threads_only else "") + (" --baseline /tmp/base19" if base else "")
    lines = ["# Pipeline benchmark: preprocessing vs model, float and uint8-input graphs", "",
             f"Command: `{cmd}` (baseline: `git worktree add /tmp/base19 51de88c`, the code before this work)", "",
             f"Machine: {cores} logical cores, **shared with other engineers' jobs**: load average at the start of each round "
             f"{', '.join(f'{x:.1f}' for x in loads)} (2.0 would be both cores busy). Absolute img/s are noisy and low; "
             "compare within a row, and the ratio columns (taken within a round, medians over rounds).", "",
             "Median img/s over rounds. *preproc*: one thread; *model*: ORT on ready batches of 32 (2 intra-op threads); "
             "*e2e*: `clsx infer`'s pipeline (2 decode workers + ORT); *eff* = e2e / (1/(1/model + 1/(2 x preproc))).", "",
             "| images | model, input | code | preproc img/s/core | model img/s | e2e img/s | eff | e2e vs today | preproc vs today |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, _, key, fast in rows:
        for name in ("today", "new"):
            rs = results.get((label, key, name))
            if not rs:
                continue
            today = results.get((label, key, "today"))
            vs_e2e = vs_pre = ""
            if name == "new" and today:
                vs_e2e = f"{_med([r['e2e'] / t['e2e'] for r, t in zip(rs, today)]):.2f}x"
                vs_pre = f"{_med([r['preproc'] / t['preproc'] for r, t in zip(rs, today)]):.2f}x"
            elif name == "new" and key.endswith("uint8") and not fast:
                ref = results.get((label, key.replace("uint8", "float"), "today"))
                if ref:
                    vs_e2e = f"{_med([r['e2e'] / t['e2e'] for r, t in zip(rs, ref)]):.2f}x (vs today's float graph)"
                    vs_pre = f"{_med([r['preproc'] / t['preproc'] for r, t in zip(rs, ref)]):.2f}x"
            lines.append(f"| {label} | {key} | {name} | {_med([r['preproc'] for r in rs]):.1f} | {_med([r['model'] for r in rs]):.1f} | "
                         f"{_med([r['e2e'] for r in rs]):.1f} | {_med([efficiency(r, cores) for r in rs]):.2f} | {vs_e2e} | {vs_pre} |")
    lines += ["", "DCT-scaled decode on 4000x3000 (this code; preprocessing, one thread, ratio within a round):", ""]
    for key in ("lite0 FP32 float", "lite0 FP32 uint8", "lite0 INT8 uint8"):
        exact, fast = results.get(("4000x3000", key, "new")), results.get(("4000x3000 fast decode", key, "new"))
        if exact and fast:
            lines.append(f"- {key}: preprocessing {_med([f['preproc'] / e['preproc'] for e, f in zip(exact, fast)]):.1f}x faster, "
                         f"end to end {_med([f['e2e'] / e['e2e'] for e, f in zip(exact, fast)]):.1f}x")
    lines += ["", "Thread budget (this code, 800x500, end to end img/s, median over rounds; ratio to the first row within a round):", "",
              "| model, input | decode workers | ORT intra-op threads | ORT spinning | e2e img/s | vs 2/2/spin |", "|---|---|---|---|---|---|"]
    for key in ("lite0 FP32 float", "lite0 INT8 float", "lite0 INT8 uint8"):
        first = results.get(("threads", key, threads[0]))
        for w, t, s in threads:
            rs = results.get(("threads", key, (w, t, s)))
            if rs:
                ratio = _med([r["e2e"] / f["e2e"] for r, f in zip(rs, first)])
                spin = "on (ORT's default)" if s else "off"
                lines.append(f"| {key} | {w} | {t} | {spin} | {_med([r['e2e'] for r in rs]):.1f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="2 rounds, 34 large images")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--large", type=int, default=68, help="how many 4000x3000 images")
    ap.add_argument("--baseline", help="a checkout of the code to compare with (PYTHONPATH for 'today')")
    ap.add_argument("--models", default=str(Path(tempfile.gettempdir()) / "clsx-pipeline-bench-models"))
    ap.add_argument("--threads-only", action="store_true", help="only the thread-budget rows (more rounds for them)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.rounds, args.large = 2, 34
    text = run(args)
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
