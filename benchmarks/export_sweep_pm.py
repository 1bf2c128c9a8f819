"""Export sweep, pretrainedmodels section: every ``pm:`` model exported to FP32 ONNX and verified.

    nice -n 10 python benchmarks/export_sweep_pm.py --out benchmarks/results/export_sweep_pm.md

- Models: every name in ``pretrainedmodels.model_names`` (45 in 0.7.4), built by clsx's zoo as
  ``pm:NAME`` with random weights (seed 0): FP32 exactness does not depend on the weights, and the
  package's own downloads are not reachable here.
- Export: :func:`clsx.exporter.export_onnx` at the model's native input size (its
  ``pretrained_settings``: 224, 299 for inception-style nets, 331 for nasnetalarge / pnasnet5large /
  polynet), dynamic batch, default opset, verification on (ONNX Runtime CPU vs torch on real photos
  preprocessed with the model's own channel order and value range, plus random input).
- Each model runs in its own process (a crash or memory blow-up is one failed row, not the end of
  the sweep) with a time limit; rows are appended to ``<out>.jsonl`` as they finish, so an
  interrupted sweep resumes where it stopped (``--restart`` ignores earlier rows, ``--retry-failed``
  runs the failed ones again; the last row of a model wins).
- Target: 100 % of the models pass; every failure is listed with its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from clsx import zoo
from clsx.exporter import export_onnx
name, folder, photos = sys.argv[1], sys.argv[2], int(sys.argv[3])
row = {"model": "pm:" + name}
t0 = time.perf_counter()
try:
    torch.manual_seed(0)
    loaded = zoo.build("pm:" + name)
    pre = loaded.spec.preprocess
    row.update(input_size="x".join(map(str, pre.input_size)), channel_order=pre.channel_order, input_range=pre.input_range,
               params=sum(p.numel() for p in loaded.module.parameters()))
    res = export_onnx(loaded, f"{folder}/{name}.onnx", verify=True, verify_photos=photos or None, force=True)
    v = res.verification or {}
    row.update(status="pass" if v.get("passed") else "fail", exporter=res.exporter, export_s=round(res.seconds, 1),
               max_abs_diff=v.get("max_abs_diff"), needed_rel=v.get("needed_rel_tolerance"),
               reason="; ".join(v.get("reasons", [])))
except BaseException as exc:
    row.update(status="fail", reason=f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"[:300])
row["wall_s"] = round(time.perf_counter() - t0, 1)
print("ROW " + json.dumps(row), flush=True)
"""


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


def versions() -> str:
    import onnxruntime
    import pretrainedmodels
    import torch

    return f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, pretrainedmodels {pretrainedmodels.__version__}"


def run_one(name: str, folder: str, photos: int, timeout: int) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, name, folder, str(photos)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": f"pm:{name}", "status": "fail", "reason": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("ROW "):
            return json.loads(line[4:])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"model": f"pm:{name}", "status": "fail", "reason": f"process exited {proc.returncode}: {tail}"[:300]}


def table(rows: list[dict], command: str) -> str:
    passed = sum(r["status"] == "pass" for r in rows)
    lines = [
        "# Export sweep: pretrainedmodels (`pm:`) models, FP32 ONNX, verified",
        "",
        f"- machine: {machine()}",
        f"- software: {versions()}",
        "- command: " + ", then ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", command) for r in rows)),
        "- models: every `pretrainedmodels.model_names` entry, random weights (seed 0), native input size;"
        " dynamic batch, default opset; verification: ONNX Runtime CPU vs torch (real photos + random input)",
        "- target: 100 % pass, every failure with its reason",
        f"- result: **{passed}/{len(rows)} pass ({passed / max(len(rows), 1):.0%})**",
        "",
        "| model | input | order / range | params | exporter | export s | max abs Δlogit | needed rel | status | reason |",
        "|---|---|---|---:|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        params = f"{r['params'] / 1e6:.1f}M" if r.get("params") else "-"
        order = f"{r.get('channel_order', '-')} / {int(r['input_range']) if r.get('input_range') else '-'}"
        diff = f"{r['max_abs_diff']:.2g}" if isinstance(r.get("max_abs_diff"), (int, float)) else "-"
        rel = f"{r['needed_rel']:.1g}" if isinstance(r.get("needed_rel"), (int, float)) else "-"
        lines.append(
            f"| {r['model']} | {r.get('input_size', '-')} | {order} | {params} | {r.get('exporter', '-')} | "
            f"{r.get('export_s', '-')} | {diff} | {rel} | {r['status']} | {r.get('reason', '') or ''} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/export_sweep_pm.md"))
    ap.add_argument("--only", nargs="*", help="model names (default: all)")
    ap.add_argument("--photos", type=int, default=4, help="photos used by the verification (0: all)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per model")
    ap.add_argument("--restart", action="store_true", help="ignore rows from an earlier run")
    ap.add_argument("--retry-failed", action="store_true", help="run again the models whose earlier row failed")
    args = ap.parse_args()
    import pretrainedmodels

    names = args.only or list(pretrainedmodels.model_names)
    rows_file = args.out.with_suffix(".jsonl")
    done: dict[str, dict] = {}
    if rows_file.exists() and not args.restart:
        for line in rows_file.read_text().splitlines():
            row = json.loads(line)
            if not (args.retry_failed and row["status"] == "fail"):
                done[row["model"]] = row
    elif rows_file.exists():
        rows_file.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "nice -n 10 python benchmarks/export_sweep_pm.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="clsx-pm-sweep-") as folder:
        for i, name in enumerate(names, 1):
            if f"pm:{name}" in done:
                continue
            t = time.perf_counter()
            row = run_one(name, folder, args.photos, args.timeout)
            row["command"] = command
            for f in Path(folder).iterdir():
                f.unlink()
            done[row["model"]] = row
            with rows_file.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"[{i}/{len(names)}] {row['model']}: {row['status']} {row.get('reason', '')} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
            rows = [done[f"pm:{n}"] for n in names if f"pm:{n}" in done]
            tmp = args.out.with_suffix(".md.tmp")
            tmp.write_text(table(rows, command))
            tmp.replace(args.out)
    rows = [done[f"pm:{n}"] for n in names]
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(table(rows, command))
    tmp.replace(args.out)
    return 0 if all(r["status"] == "pass" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
