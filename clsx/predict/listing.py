"""Listing images: the one walk every command uses (infer, parity, bench, calibration, ``--ray``).

:func:`iter_image_paths` walks folders lazily, depth first, each folder's entries sorted, so paths
come out in sorted order (by path components) without listing the whole tree first; several roots
are merged into one sorted stream. Files named explicitly are taken whatever their extension;
inside folders only image extensions count. Symlinked folders are followed unless they lead back
to a folder already on the walk (a loop, skipped with a warning).
"""

from __future__ import annotations

import heapq
import logging
import os
from pathlib import Path
from typing import Iterator

from clsx.core.errors import ClsxError
from clsx.core.preprocess import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


def iter_image_paths(*paths: str | os.PathLike, recursive: bool = True) -> Iterator[Path]:
    """Image files under ``paths`` in sorted order, lazily.

    Files named explicitly are taken whatever their extension; inside folders only image
    extensions count. Symlinked folders are followed unless they lead back to a folder already on
    the current walk (a symlink loop), which is skipped with a warning. A folder that cannot be
    listed is skipped with a warning. Missing paths raise ClsxError before anything runs.
    """
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists() and not root.is_symlink():
            raise ClsxError(f"{root}: no such file or directory")
    walks = [_walk(root, recursive) if root.is_dir() else iter([root]) for root in sorted(set(roots), key=_key)]
    last: Path | None = None
    for path in heapq.merge(*walks, key=_key):
        if path != last:  # overlapping roots (a folder and a file inside it) give each file once
            yield path
        last = path


def _key(p: Path) -> tuple[str, ...]:
    return p.parts


def _walk(folder: Path, recursive: bool, ancestors: frozenset[tuple[int, int]] = frozenset()) -> Iterator[Path]:
    try:
        st = folder.stat()
        ident = (st.st_dev, st.st_ino)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        log.warning("%s: cannot list folder (%s); skipped", folder, exc.strerror or exc)
        return
    if ident in ancestors:
        log.warning("%s: symlink loop (leads back to a folder being walked); skipped", folder)
        return
    here = ancestors | {ident}
    for entry in entries:
        path = folder / entry.name
        try:
            is_dir = entry.is_dir()  # follows symlinks; False for a broken or looping link
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(path, recursive, here)
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
            yield path



def list_images(*paths: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """:func:`iter_image_paths` as a list (for callers that sample or count the whole set)."""
    return list(iter_image_paths(*paths, recursive=recursive))
