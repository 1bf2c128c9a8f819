"""Class labels: ImageNet-1k names from torchvision, or a user's labels file."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from clsx.core.artifact import read_text_file
from clsx.core.errors import SpecError


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, as torchvision's weights metadata lists them."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def read_labels(path: str | Path, num_classes: int | None = None) -> tuple[str, ...]:
    """Read labels from a text file (one per line) or a JSON list; check the count if given."""
    p = Path(path)
    text = read_text_file(p, what="labels file", error=SpecError)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"labels file {p}: invalid JSON ({exc})") from None
        if isinstance(data, dict):  # {"0": "cat", "1": "dog"}
            data = [data[k] for k in sorted(data, key=lambda k: int(k))]
        if not isinstance(data, list):
            raise SpecError(f"labels file {p}: expected a JSON list of names")
        labels = tuple(str(x) for x in data)
    else:
        labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if num_classes is not None and len(labels) != num_classes:
        raise SpecError(f"labels file {p} has {len(labels)} labels but the model has {num_classes} classes")
    return labels
