"""The guard against the classic deployment bug: C++ preprocessing must equal clsx.core.preprocess.

Real photos (scikit-image / scikit-learn) and variants of them (EXIF orientations, greyscale,
CMYK and progressive JPEG, RGB/RGBA/LA/palette/16-bit/1-bit PNG, EXIF in PNG) go
through the C++ pipeline (``clsx_preprocess_dump``) and through :func:`clsx.core.preprocess.preprocess`;
every tensor element must agree within 1/255 of the input range (compared before normalization,
i.e. the difference is multiplied back by std). Today they agree bit for bit; the tolerance is what
the issue promises. A last test shows the guard fires on a resize that differs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from clsx.core.metadata import make_document
from clsx.core.preprocess import preprocess
from clsx.core.spec import ModelSpec, PreprocessSpec

TOLERANCE = 1.0 / 255.0

SPECS = {
    # the two most common eval transforms (torchvision / timm), then the unusual settings
    "bilinear-224": PreprocessSpec(interpolation="bilinear"),
    "bicubic-224-lite0": PreprocessSpec(interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3),
    "nearest-non-square": PreprocessSpec(input_size=(3, 240, 320), resize_size=250, interpolation="nearest"),
    "lanczos-upscale": PreprocessSpec(input_size=(3, 300, 300), resize_size=600, interpolation="lanczos"),
    "box-grey-model": PreprocessSpec(input_size=(1, 64, 64), resize_size=73, interpolation="box", mean=(0.45,), std=(0.22,)),
    "hamming-bgr-255": PreprocessSpec(interpolation="hamming", channel_order="BGR", input_range=255.0,
                                      mean=(104.0, 117.0, 123.0), std=(57.0, 57.0, 58.0)),
    "bicubic-padded-crop": PreprocessSpec(input_size=(3, 224, 224), resize_size=200, interpolation="bicubic"),
}


def write_doc(folder: Path, spec: PreprocessSpec) -> Path:
    doc = make_document(ModelSpec(name="guard", source="custom", num_classes=2, preprocess=spec),
                        artifact="aoti", precision="fp32", inputs=[], outputs=[])
    path = folder / "doc.json"
    path.write_text(json.dumps(doc))
    return path


def cpp_tensors(cpp_build, doc: Path, images: list[Path], out: Path, shape: tuple[int, int, int]) -> np.ndarray:
    proc = subprocess.run([str(cpp_build.preprocess_dump), str(doc), str(out), *map(str, images)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return np.fromfile(out, dtype=np.float32).reshape(len(images), *shape)


def assert_within_guard(got: np.ndarray, ref: np.ndarray, spec: PreprocessSpec, names: list[str]) -> None:
    std = np.asarray(spec.std, dtype=np.float64).reshape(1, -1, 1, 1)
    diff = np.abs(got.astype(np.float64) - ref) * std / spec.input_range  # back in [0, 1] units
    worst = diff.reshape(len(names), -1).max(axis=1)
    bad = [f"{n}: {w * 255:.2f}/255" for n, w in zip(names, worst) if w > TOLERANCE]
    assert not bad, f"C++ preprocessing differs from clsx.core.preprocess by more than 1/255: {bad}"
    # Both run the same resampling and normalization code (cpp/src/resample.c) on the same decoder's pixels:
    # anything but the same bits is a bug, however small.
    differs = [n for n, g, r in zip(names, got, ref) if not np.array_equal(g, r)]
    assert not differs, f"C++ and Python tensors are not bit-identical on {differs}"


def write_variants(dest: Path, photos: dict[str, Path]) -> list[Path]:
    """Encodings and metadata the decoders must handle like Pillow, made from the real photos."""
    dest.mkdir(parents=True, exist_ok=True)
    coffee = Image.open(photos["coffee"]).convert("RGB")
    chelsea = Image.open(photos["chelsea"]).convert("RGB")
    astronaut = Image.open(photos["astronaut"]).convert("RGB")
    written: list[Path] = []

    def save(img: Image.Image, name: str, **kw) -> None:
        path = dest / name
        img.save(path, **kw)
        written.append(path)

    for orientation in range(2, 9):  # every EXIF orientation, on a non-square photo
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(coffee, f"exif_{orientation}.jpg", quality=90, exif=exif.tobytes())
    exif = Image.Exif()
    exif[0x0112] = 6
    save(chelsea, "exif_6.png", exif=exif.tobytes())
    save(chelsea.convert("L"), "grey.jpg", quality=90)
    save(chelsea.convert("CMYK"), "cmyk.jpg", quality=90)
    save(astronaut, "progressive.jpg", quality=85, progressive=True)
    save(astronaut, "subsampling_444.jpg", quality=95, subsampling=0)
    save(chelsea, "rgb.png")
    rgba = chelsea.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(chelsea.size))
    save(rgba, "rgba.png")
    save(chelsea.convert("LA"), "la.png")
    save(chelsea.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "palette.png")
    save(chelsea.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "palette_trns.png", transparency=3)
    save(chelsea.convert("1"), "bilevel.png")
    grey16 = np.asarray(chelsea.convert("L"), dtype=np.uint16) * 257 + 3
    save(Image.fromarray(grey16), "grey16.png")
    save(ImageOps.mirror(coffee).resize((97, 61)), "tiny.jpg", quality=90)
    return written


@pytest.fixture(scope="module")
def variants(tmp_path_factory, photo) -> list[Path]:
    return write_variants(tmp_path_factory.mktemp("variants"), photo)


@pytest.mark.parametrize("name", list(SPECS))
def test_cpp_preprocessing_equals_python_on_real_photos(cpp_build, photos, tmp_path, name):
    spec = SPECS[name]
    got = cpp_tensors(cpp_build, write_doc(tmp_path, spec), photos, tmp_path / "t.bin", spec.input_size)
    ref = np.stack([preprocess(p, spec) for p in photos])
    assert_within_guard(got, ref, spec, [p.name for p in photos])


@pytest.mark.parametrize("name", ["bicubic-224-lite0", "box-grey-model"])
def test_cpp_decoding_equals_pillow_on_variants(cpp_build, variants, tmp_path, name):
    spec = SPECS[name]
    got = cpp_tensors(cpp_build, write_doc(tmp_path, spec), variants, tmp_path / "t.bin", spec.input_size)
    ref = np.stack([preprocess(p, spec) for p in variants])
    assert_within_guard(got, ref, spec, [p.name for p in variants])


def test_cpp_and_python_agree_on_exif_geometry(cpp_build, variants, tmp_path):
    """Orientations 5-8 swap width and height: a non-square crop shows a wrong rotation at once."""
    spec = PreprocessSpec(input_size=(3, 96, 160), resize_size=96, interpolation="bilinear")
    rotated = [p for p in variants if p.name.startswith("exif_")]
    got = cpp_tensors(cpp_build, write_doc(tmp_path, spec), rotated, tmp_path / "t.bin", spec.input_size)
    ref = np.stack([preprocess(p, spec) for p in rotated])
    assert_within_guard(got, ref, spec, [p.name for p in rotated])


@pytest.mark.parametrize("name", ["bilinear-224", "bicubic-224-lite0"])
def test_cpp_takes_pillows_pass_order_on_tall_images(cpp_build, photo, tmp_path, name):
    """Pillow 13 resizes vertically first when the height shrinks by more than twice the width does
    (tall images); each pass rounds to uint8, so the other order is a level off. Bit for bit here."""
    spec = SPECS[name]
    chelsea = Image.open(photo["chelsea"]).convert("RGB")
    images = []
    for w, h in [(300, 2000), (250, 1400), (640, 2400), (2000, 300), (400, 1000)]:
        images.append(tmp_path / f"{w}x{h}.png")
        chelsea.resize((w, h), Image.Resampling.LANCZOS).save(images[-1])  # lossless: decoding is not the question
    got = cpp_tensors(cpp_build, write_doc(tmp_path, spec), images, tmp_path / "t.bin", spec.input_size)
    ref = np.stack([preprocess(p, spec) for p in images])
    differs = [p.name for p, g, r in zip(images, got, ref) if not np.array_equal(g, r)]
    assert not differs, f"C++ and Python differ on {differs}"


def test_guard_fires_on_a_different_resize(cpp_build, photos, tmp_path):
    """The comparison is sensitive: bilinear in C++ against bicubic in Python is far beyond 1/255."""
    cpp_spec, py_spec = PreprocessSpec(interpolation="bilinear"), PreprocessSpec(interpolation="bicubic")
    got = cpp_tensors(cpp_build, write_doc(tmp_path, cpp_spec), photos[:4], tmp_path / "t.bin", cpp_spec.input_size)
    ref = np.stack([preprocess(p, py_spec) for p in photos[:4]])
    with pytest.raises(AssertionError, match="more than 1/255"):
        assert_within_guard(got, ref, py_spec, [p.name for p in photos[:4]])


@pytest.mark.parametrize("content, reason", [
    (b"", "not a recognised image file"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "cannot decode image"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "cannot decode image"),
])
def test_cpp_refuses_corrupt_images_with_a_message(cpp_build, tmp_path, content, reason):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    proc = subprocess.run([str(cpp_build.preprocess_dump), str(write_doc(tmp_path, PreprocessSpec())), str(tmp_path / "t.bin"), str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert reason in proc.stderr and str(bad) in proc.stderr


def test_truncated_jpeg_is_an_error_in_both(cpp_build, photo, tmp_path):
    from clsx.core.errors import ImageError

    data = photo["rocket"].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError):
        preprocess(cut, PreprocessSpec())
    proc = subprocess.run([str(cpp_build.preprocess_dump), str(write_doc(tmp_path, PreprocessSpec())), str(tmp_path / "t.bin"), str(cut)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "cannot decode image" in proc.stderr
