"""Export sweep: every torchvision classification model and 150+ timm architectures -> verified FP32 ONNX.

    nice -n 10 python benchmarks/export_sweep.py                 # run (resumes where it stopped)
    python benchmarks/export_sweep.py --render                   # rewrite the table from the .jsonl
    python benchmarks/export_sweep.py --only resnet50 timm:vit_tiny_patch16_224 --retry

- **Models.** torchvision: every name in ``torchvision.models.list_models(module=torchvision.models)``
  at its default input size (except :data:`TV_INPUT`: vit_h_14 at 224 px, the size torchvision
  builds it for without weights). timm: one architecture per timm model family (module) -- the one with
  the fewest parameters among those whose default input is at most 224 px, else the smallest at
  224 px -- then more families' distinct architectures (smallest first, at most 100 M parameters)
  until :data:`TIMM_TARGET` is reached. ``test_*`` models (timm's CI toys) are skipped.
- **Weights.** Random (seed 0). So that the logits depend on the whole network (and the check is
  not vacuous): weight tensors that the library initialises to exactly zero (classifier heads,
  last-BN gammas, layer scales) are redrawn from N(0, 0.02), and BatchNorm running statistics are
  recomputed on the sample photos (one train-mode pass, momentum=None), giving activations the
  scale of a trained network.
- **Export.** :func:`clsx.exporter.export_onnx` exactly as ``clsx export`` runs it: dynamo exporter
  (TorchScript fallback), dynamic batch, default opset, verification on (ONNX Runtime CPU vs torch
  on :data:`PHOTOS` real photos as one batch, plus a random batch of 1). Tolerance: max |Δlogit|
  <= 1e-3 x the largest |logit| (random weights: top-k agreement is not gated).
- Each model runs in its own process with a time limit (a crash or memory blow-up is one failed
  row, not the end of the sweep), smallest models first; rows are appended to ``<out>.jsonl`` as
  they finish and the Markdown table is rewritten after each one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "export_sweep.md"
TIMM_TARGET = 170
MAX_TIMM_PARAMS = 100e6
PHOTOS = 8
TIMEOUT_S = 3600

CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import logging
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
import torch
from torch import nn
from clsx import zoo, samples
from clsx.exporter import export_onnx
from clsx.core.preprocess import preprocess_batch
from clsx.core.errors import SpecError
from clsx.core.spec import PreprocessOverrides

name, folder, photos, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
row = {"model": name}
t0 = time.perf_counter()

def realistic(module, pre):
    notes = []
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for pname, p in module.named_parameters():
            if p.ndim >= 1 and p.numel() > 1 and not pname.endswith("bias") and bool((p == 0).all()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
                notes.append(pname)
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if bns:
        x = torch.from_numpy(preprocess_batch(samples.photo_paths()[:8], pre))
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats(); m.momentum = None
        module.train()
        try:
            with torch.no_grad():
                module(x)
        finally:
            module.eval()
            for m, mom in zip(bns, saved):
                m.momentum = mom
    return len(notes), len(bns)

try:
    torch.manual_seed(0)
    overrides = PreprocessOverrides(input_size=(3, size, size)) if size else None
    try:
        loaded = zoo.build(name, preprocess=overrides)
    except SpecError as exc:  # e.g. attention blocks built for one size: use the model's own size
        if overrides is None:
            raise
        loaded = zoo.build(name)
        row["note"] = f"native size: {str(exc).split(';')[0]}"
    pre = loaded.spec.preprocess
    row.update(input="x".join(map(str, pre.input_size)), params=sum(p.numel() for p in loaded.module.parameters()))
    try:
        redrawn, bns = realistic(loaded.module, pre)
        row.update(redrawn_zero=redrawn, bn_recalibrated=bns)
    except Exception as exc:
        row["note"] = (row.get("note", "") + f"; weights left as initialised ({type(exc).__name__})").lstrip("; ")
    tb = time.perf_counter()
    res = export_onnx(loaded, f"{folder}/model.onnx", verify=True, verify_photos=photos, force=True)
    v = res.verification or {}
    row.update(status="pass" if v.get("passed") else "fail", exporter=res.exporter, seconds=round(time.perf_counter() - tb, 1),
               max_abs_diff=v.get("max_abs_diff"), logit_scale=max(v.get("photos_logit_scale") or 0, v.get("random_logit_scale") or 0),
               needed_rel=v.get("needed_rel_tolerance"), fallback=res.metadata["producer"].get("fallback_reason", ""),
               reason="; ".join(v.get("reasons", [])), criteria=v.get("criteria", {}), fp64_check=v.get("fp64_check", {}),
               external_data=bool(res.metadata.get("external_data")))
except BaseException as exc:
    text = str(exc).strip().splitlines()
    row.update(status="fail", reason=f"{type(exc).__name__}: {text[0] if text else ''}"[:400])
row["wall_s"] = round(time.perf_counter() - t0, 1)
print("ROW " + json.dumps(row), flush=True)
"""


# ---------------------------------------------------------------------------------------------
# model selection


#: torchvision models whose random-weight build does not take the preset of their DEFAULT weights:
#: input size to use instead, and why (shown in the table)
TV_INPUT = {
    "vit_h_14": (224, "224 px: with random weights torchvision builds vit_h_14 for 224 px (image_size=224); "
                      "its 518 px preset belongs to the SWAG E2E weights, which build it for 518"),
}


def torchvision_models() -> list[tuple[str, int]]:
    import torchvision

    return [(f"tv:{n}", TV_INPUT.get(n, (0, ""))[0]) for n in torchvision.models.list_models(module=torchvision.models)]


def estimated_params(name: str) -> int:
    """Parameter count without building the model (orders the run: small models first)."""
    source, _, arch = name.partition(":")
    if source == "timm":
        return _timm_table().get(arch, 10**9)
    import torchvision

    try:
        return int(torchvision.models.get_model_weights(arch).DEFAULT.meta["num_params"])
    except Exception:
        return 10**9


def _timm_table() -> dict[str, int]:
    params_file = HERE.parent / "clsx" / "zoo" / "data" / "timm_params.json"
    return json.loads(params_file.read_text()).get("params", {})


def _arch_prefix(name: str) -> str:
    """resnet18d -> resnet, tf_efficientnet_b0 -> tf_efficientnet, vit_tiny_patch16_224 -> vit_tiny."""
    parts = re.split(r"[_]", name)
    head = re.sub(r"\d.*$", "", parts[0]) or parts[0]
    if len(parts) > 1 and parts[0] in ("tf", "legacy", "gluon", "ecaresnet", "vit", "deit", "eva02", "convnext"):
        return f"{parts[0]}_{re.sub(r'[0-9].*$', '', parts[1])}"
    return head


def timm_models(target: int = TIMM_TARGET) -> list[tuple[str, int, str]]:
    """(timm:name, input-size override or 0, family) -- one per family first, then more architectures."""
    import timm
    from timm.models import get_pretrained_cfg

    table = _timm_table()
    families: dict[str, list[tuple[int, str, int]]] = {}
    for module in timm.list_modules():
        rows = []
        for name in timm.list_models(module=module):
            if name.startswith("test_"):
                continue
            try:
                cfg = get_pretrained_cfg(name)
                h, w = (cfg.input_size[1], cfg.input_size[2]) if cfg is not None else (224, 224)
            except Exception:
                h, w = 224, 224
            override = 0 if max(h, w) <= 224 else 224
            rows.append((table.get(name, 10**12), name, override))
        rows.sort(key=lambda r: (r[2] != 0, r[0], r[1]))  # native <= 224 px first, then fewest parameters
        if rows:
            families[module] = rows
    chosen: list[tuple[str, int, str]] = []
    seen_prefix: set[str] = set()
    for module, rows in families.items():
        _, name, override = rows[0]
        chosen.append((f"timm:{name}", override, module))
        seen_prefix.add(_arch_prefix(name))
    pools = {m: [r for r in rows[1:] if r[0] <= MAX_TIMM_PARAMS] for m, rows in families.items()}
    while len(chosen) < target and any(pools.values()):
        for module in sorted(pools, key=lambda m: -len(pools[m])):
            pool = pools[module]
            while pool:
                _, name, override = pool.pop(0)
                if _arch_prefix(name) not in seen_prefix:
                    seen_prefix.add(_arch_prefix(name))
                    chosen.append((f"timm:{name}", override, module))
                    break
            if len(chosen) >= target:
                break
        if all(not p for p in pools.values()):
            break
        if not any(_arch_prefix(r[1]) not in seen_prefix for p in pools.values() for r in p):
            break
    return chosen


# ---------------------------------------------------------------------------------------------
# running


def run_one(name: str, size: int, photos: int, timeout: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="clsx-sweep-") as folder:
        try:
            proc = subprocess.run([sys.executable, "-c", CHILD, name, folder, str(photos), str(size)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"model": name, "status": "fail", "reason": f"timeout: export + verify took over {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("ROW "):
            return json.loads(line[4:])
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return {"model": name, "status": "fail", "reason": f"process died (exit {proc.returncode}): {tail}"[:400]}


def machine() -> str:
    from clsx.tools.bench import machine_info

    m = machine_info()
    return f"{m['cpu']}, {m['logical_cores']} logical cores, {m['os']}, Python {m['python']}"


def versions() -> str:
    import onnx
    import onnxruntime
    import onnxscript
    import timm
    import torch
    import torchvision

    return (f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, "
            f"onnx {onnx.__version__}, onnxscript {onnxscript.__version__}, onnxruntime {onnxruntime.__version__}")


def _fmt(v, spec: str) -> str:
    return "-" if v is None or v == "" else format(v, spec)


def render(rows: list[dict], out: Path, plan: list[tuple[str, int, str]]) -> None:
    latest = {r["model"]: r for r in rows}
    family = {name: fam for name, _, fam in plan}
    ordered = [latest[n] for n, _, _ in plan if n in latest] + [r for n, r in latest.items() if n not in family]
    tv = [r for r in ordered if r["model"].startswith("tv:")]
    tm = [r for r in ordered if r["model"].startswith("timm:")]

    def tally(rs, planned):
        ok = sum(r.get("status") == "pass" for r in rs)
        text = f"{ok}/{len(rs)} pass ({ok / len(rs):.0%})" if rs else "0/0"
        return text if len(rs) >= planned else f"{text}, {len(rs)} of {planned} planned models run so far"

    fams = {family.get(r["model"]) for r in tm}
    planned_fams = {fam for n, _, fam in plan if n.startswith("timm:")}
    passed_fams = {family.get(r["model"]) for r in tm if r.get("status") == "pass"}
    lines = [
        "# Export sweep: torchvision + timm -> FP32 ONNX, verified on the spot",
        "",
        f"- machine: {machine()} (shared with other jobs; seconds are indicative)",
        f"- software: {versions()}",
        "- command: `nice -n 10 python benchmarks/export_sweep.py` (see the script's docstring for the selection and weights)",
        f"- verification: ONNX Runtime CPU vs torch on {PHOTOS} real photos (one batch) + a random batch of 1; "
        "pass = max |Δlogit| <= 1e-3 x largest |logit| (random weights: agreement not gated); a set that misses it is "
        "accepted against the float64 result only when the ONNX graph is within 2x torch's own FP32 noise there, the photos "
        "passed the plain tolerance and top-1 vs float64 is no worse than torch's (clsx/exporter/verify.py); the reason column says so",
        f"- torchvision: **{tally(tv, sum(n.startswith('tv:') for n, _, _ in plan))}**; "
        f"timm: **{tally(tm, sum(n.startswith('timm:') for n, _, _ in plan))}** over {len(fams - {None})} families "
        f"(of {len(planned_fams)} planned; {len(passed_fams - {None})} with at least one passing model)",
        f"- exporters: dynamo {sum(r.get('exporter') == 'dynamo' for r in ordered)}, "
        f"TorchScript fallback {sum(r.get('exporter') == 'torchscript' for r in ordered)}",
        "",
        "`seconds` = export + verification (model build excluded); `logit scale` = largest |logit| of the reference.",
        "",
        "| model | family | params | input | exporter | result | max abs Δlogit | logit scale | needed rel | seconds | reason |",
        "|---|---|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in ordered:
        params = f"{r['params'] / 1e6:.1f}M" if r.get("params") else "-"
        reason = r.get("reason", "") or (f"dynamo failed, TorchScript used: {r['fallback']}" if r.get("fallback") else "")
        for set_name, how in (r.get("criteria") or {}).items():
            d = (r.get("fp64_check") or {}).get(set_name)
            if how != "tolerance" and d:
                reason = (f"{reason}; {set_name}: accepted against float64 ({how}): torch FP32 noise {d['fp32_noise']:.3g}, "
                          f"ONNX {d['candidate_vs_fp64']:.3g} from float64").lstrip("; ")
        if r["model"].startswith("tv:") and r["model"][3:] in TV_INPUT:
            reason = f"{reason}; {TV_INPUT[r['model'][3:]][1]}".lstrip("; ")
        if r.get("external_data"):
            reason = f"{reason}; weights in model.onnx.data (graph >= 2 GiB)".lstrip("; ")
        if r.get("note"):
            reason = f"{reason}; {r['note']}".lstrip("; ")
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason).replace("|", "/").replace("\n", " ")  # older rows kept torch's colours
        lines.append(
            f"| {r['model']} | {family.get(r['model'], 'torchvision' if r['model'].startswith('tv:') else '-')} | {params} | "
            f"{r.get('input', '-')} | {r.get('exporter', '-')} | {r.get('status')} | {_fmt(r.get('max_abs_diff'), '.2g')} | "
            f"{_fmt(r.get('logit_scale'), '.3g')} | {_fmt(r.get('needed_rel'), '.1g')} | {_fmt(r.get('seconds'), '.1f')} | {reason} |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown table; rows also go to OUT.jsonl")
    ap.add_argument("--only", nargs="*", help="only these models (tv:NAME / timm:NAME)")
    ap.add_argument("--retry", action="store_true", help="run models again even when they have a row")
    ap.add_argument("--retry-failed", action="store_true", help="run the failed models again")
    ap.add_argument("--render", action="store_true", help="only rewrite the table from the .jsonl")
    ap.add_argument("--list", action="store_true", help="print the model plan and exit")
    ap.add_argument("--timeout", type=int, default=TIMEOUT_S, help="seconds per model")
    ap.add_argument("--photos", type=int, default=PHOTOS, help="verification photos per model")
    args = ap.parse_args()

    plan = [(n, s, "torchvision") for n, s in torchvision_models()] + timm_models()
    if args.list:
        for name, size, fam in plan:
            print(f"{name}\t{fam}\t{size or 'native'}")
        print(f"{len(plan)} models, {len({f for _, _, f in plan}) - 1} timm families", file=sys.stderr)
        return 0
    jsonl = args.out.with_suffix(".jsonl")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] if jsonl.exists() else []
    if args.render:
        render(rows, args.out, plan)
        return 0
    done = {r["model"]: r for r in rows}
    todo = sorted(((n, s) for n, s, _ in plan), key=lambda t: estimated_params(t[0]))  # cheapest first
    if args.only:
        sizes = {n: s for n, s, _ in plan}
        todo = [(n, sizes.get(n, 0)) for n in args.only]
    for i, (name, size) in enumerate(todo, 1):
        prev = done.get(name)
        if prev and not args.retry and not (args.retry_failed and prev.get("status") != "pass"):
            continue
        t = time.perf_counter()
        row = run_one(name, size, args.photos, args.timeout)
        with jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        done[name] = row
        render(rows, args.out, plan)
        print(f"[{i}/{len(todo)}] {name}: {row['status']} ({time.perf_counter() - t:.0f} s) {row.get('reason', '')}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
