"""The one way a benchmark reports: the results text on stdout, and into ``--out`` (its folder created)."""

from __future__ import annotations

from pathlib import Path


def emit(text: str, out: Path | None) -> None:
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
