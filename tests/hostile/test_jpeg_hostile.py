"""Damaged JPEGs through the fast decode path (libjpeg-turbo into a reused buffer): each one must end exactly
as it does on Pillow's path, the same tensor or the same one-line ImageError, never a crash or other pixels."""

import numpy as np
from PIL import Image

from clsx.core import preprocess as pp
from clsx.core.errors import ImageError
from clsx.core.spec import PreprocessSpec

SPEC = PreprocessSpec(input_size=(3, 64, 64), resize_size=73)


def _outcome(path):
    try:
        return pp.preprocess(path, SPEC)
    except ImageError as exc:
        return str(exc)


def _damaged(tmp_path, photo) -> list:
    """Seeded byte flips, cuts and splices of two real JPEGs (baseline and progressive, one EXIF-turned)."""
    rng = np.random.default_rng(19)
    img = Image.open(photo["coffee"]).convert("RGB").resize((200, 133))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "base.jpg", quality=85, exif=exif)
    img.save(tmp_path / "prog.jpg", quality=85, progressive=True)
    out = []
    for name in ("base.jpg", "prog.jpg"):
        data = bytearray((tmp_path / name).read_bytes())
        for i in range(30):
            d = bytearray(data)
            kind = i % 3
            if kind == 0:  # flip bytes anywhere, headers included
                for at in rng.integers(2, len(d), size=int(rng.integers(1, 6))):
                    d[at] ^= int(rng.integers(1, 256))
            elif kind == 1:  # cut short
                d = d[: int(rng.integers(20, len(d)))]
            else:  # a splice of garbage in the entropy-coded data
                at = int(rng.integers(len(d) // 2, len(d) - 10))
                d[at:at] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 40)), dtype=np.uint8))
            path = tmp_path / f"{name[:-4]}_{i}.jpg"
            path.write_bytes(bytes(d))
            out.append(path)
    return out


def test_damaged_jpegs_end_as_on_pillows_path(tmp_path, photo, monkeypatch, native_kernels):
    files = _damaged(tmp_path, photo)
    fast = [_outcome(p) for p in files]
    monkeypatch.setenv("CLSX_RESAMPLE", "pillow")
    monkeypatch.setattr(pp, "_turbo", None)
    slow = [_outcome(p) for p in files]
    for path, a, b in zip(files, fast, slow):
        assert type(a) is type(b), (path.name, a if isinstance(a, str) else b)
        assert (a == b) if isinstance(a, str) else np.array_equal(a, b), path.name
    kinds = {isinstance(x, str) for x in fast}
    assert kinds == {True, False}  # both endings occur: the comparison covers errors and pixels
