"""Regenerate clsx/zoo/data/pm_params.json: the models of Cadene's pretrainedmodels, listable offline.

`clsx models` must list fast, without building models and without importing pretrainedmodels
(about 1.5 s on top of torchvision and timm). This script records, for the installed
pretrainedmodels version, each model's default input size (from its ``pretrained_settings``) and its
parameter count (built once on the meta device: no memory, no weights, no download).
Run it after upgrading pretrainedmodels:  python scripts/gen_pm_params.py
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pretrainedmodels
import torch

from clsx.zoo.pretrainedmodels_source import settings_of

OUT = Path(__file__).resolve().parents[1] / "clsx" / "zoo" / "data" / "pm_params.json"


def main() -> int:
    warnings.filterwarnings("ignore")
    models: dict[str, dict[str, object]] = {}
    failed: dict[str, str] = {}
    for name in sorted(pretrainedmodels.model_names):
        settings = settings_of(name)
        row: dict[str, object] = {"input_size": [int(v) for v in settings.values["input_size"]], "params": None}
        try:
            with torch.device("meta"):
                model = pretrainedmodels.__dict__[name](num_classes=settings.values["num_classes"], pretrained=None)
            row["params"] = int(sum(p.numel() for p in model.parameters()))
        except Exception as exc:  # a model that cannot be built on meta: listed without a count
            failed[name] = f"{type(exc).__name__}: {exc}"[:200]
        models[name] = row
    lines = [f"{json.dumps(name)}: {json.dumps(row)}" for name, row in models.items()]
    OUT.write_text(
        "{\n"
        f'"pretrainedmodels_version": {json.dumps(pretrainedmodels.__version__)},\n'
        f'"failed": {json.dumps(failed)},\n'
        '"models": {\n' + ",\n".join(lines) + "\n}\n}\n"
    )
    print(f"wrote {OUT}: {len(models)} models, {len(failed)} without a parameter count", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
