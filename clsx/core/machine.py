"""Facts about the machine this process runs on."""

from __future__ import annotations

import os


def cpu_cores() -> int:
    """CPU cores this process may use (the affinity mask, not the host's count, inside containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
