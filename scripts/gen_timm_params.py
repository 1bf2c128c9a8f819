"""Regenerate clsx/zoo/data/timm_params.json: parameter counts of every timm architecture.

`clsx models` must list fast, without building models. Parameter counts of timm architectures are
not in timm's registry, so this script builds each one on the meta device (no memory, no weights,
no download) once, counts its parameters, and stores the table with the timm version it came from.
Run it after upgrading timm:  python scripts/gen_timm_params.py
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import timm
import torch

OUT = Path(__file__).resolve().parents[1] / "clsx" / "zoo" / "data" / "timm_params.json"


def main() -> int:
    warnings.filterwarnings("ignore")
    names = timm.list_models()
    params: dict[str, int] = {}
    failed: dict[str, str] = {}
    for i, name in enumerate(names, 1):
        try:
            with torch.device("meta"):
                model = timm.create_model(name)
            params[name] = int(sum(p.numel() for p in model.parameters()))
        except Exception as exc:  # a model that cannot be built on meta: left out of the table
            failed[name] = f"{type(exc).__name__}: {exc}"[:200]
        if i % 100 == 0:
            print(f"{i}/{len(names)}", file=sys.stderr)
    OUT.write_text(json.dumps({"timm_version": timm.__version__, "params": params, "failed": failed}, indent=0, sort_keys=True) + "\n")
    print(f"wrote {OUT}: {len(params)} models, {len(failed)} failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
