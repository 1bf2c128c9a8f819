"""The one preprocessing implementation against torchvision's and timm's transforms on real photos."""

import io

import numpy as np
import pytest
from PIL import Image

from clsx.core.errors import ImageError
from clsx.core.preprocess import load_image, preprocess, preprocess_batch
from clsx.predict.listing import list_images
from clsx.core.spec import PreprocessSpec

PIXEL = 1.0 / 255.0


def _pixel_diff(ours: np.ndarray, theirs: np.ndarray, spec: PreprocessSpec) -> float:
    """Largest difference in [0, 1] pixel units (undo the std scaling)."""
    std = np.asarray(spec.std, dtype=np.float64)[:, None, None]
    return float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)) * std))


@pytest.mark.parametrize(
    "spec",
    [
        PreprocessSpec(),  # 256 -> 224 bilinear, ImageNet stats (classic torchvision)
        PreprocessSpec(input_size=(3, 299, 299), resize_size=342),  # inception_v3
        PreprocessSpec(resize_size=232, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3),
        PreprocessSpec(input_size=(3, 32, 32), resize_size=36, interpolation="nearest"),
    ],
    ids=["224-bilinear", "299-inception", "232-bicubic", "32-nearest"],
)
def test_matches_torchvision_transforms(photos, spec):
    from torchvision import transforms as T

    mode = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
            "nearest": T.InterpolationMode.NEAREST}[spec.interpolation]
    tv = T.Compose([
        T.Resize(spec.resize_size, interpolation=mode),
        T.CenterCrop(spec.input_size[1:]),
        T.ToTensor(),
        T.Normalize(spec.mean, spec.std),
    ])
    for path in photos:
        ours = preprocess(path, spec)
        theirs = tv(Image.open(path).convert("RGB")).numpy()
        assert ours.shape == theirs.shape == spec.input_size
        assert ours.dtype == np.float32
        assert _pixel_diff(ours, theirs, spec) <= PIXEL, path.name


def test_matches_timm_eval_transform(photos, lite0):
    import timm.data

    cfg = timm.data.resolve_data_config(model=lite0.module)
    tf = timm.data.create_transform(**cfg)
    spec = lite0.spec.preprocess
    assert spec.input_size == cfg["input_size"] and spec.interpolation == cfg["interpolation"]
    for path in photos:
        ours = preprocess(path, spec)
        theirs = tf(Image.open(path).convert("RGB")).numpy()
        assert _pixel_diff(ours, theirs, spec) <= PIXEL, path.name


def test_wrong_spec_is_detected(photo):
    """The comparison above can fail: a different resize gives a clearly different tensor."""
    a = preprocess(photo["coffee"], PreprocessSpec())
    b = preprocess(photo["coffee"], PreprocessSpec(resize_size=300))
    assert _pixel_diff(a, b, PreprocessSpec()) > 10 * PIXEL


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_any_mode_becomes_rgb(tmp_path, photo):
    rgb = Image.open(photo["chelsea"]).convert("RGB")
    variants = {
        "l.png": _save(rgb.convert("L"), "PNG"),
        "p.gif": _save(rgb.convert("P"), "GIF"),
        "rgba.png": _save(rgb.convert("RGBA"), "PNG"),
        "cmyk.jpg": _save(rgb.convert("CMYK"), "JPEG", quality=95),
        "i16.png": _save(Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)), "PNG"),
    }
    ref = np.asarray(rgb.convert("L"), dtype=np.float64)
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        img = load_image(tmp_path / name)
        assert img.mode == "RGB" and img.size == rgb.size, name
        grey = np.asarray(img.convert("L"), dtype=np.float64)
        # content survives the conversion (16-bit is rescaled, not clipped to white)
        assert np.mean(np.abs(grey - ref)) < 12, name
    assert preprocess(tmp_path / "i16.png", PreprocessSpec()).shape == (3, 224, 224)


def test_exif_orientation_is_applied(tmp_path, photo):
    rgb = Image.open(photo["chelsea"]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    (tmp_path / "rot.jpg").write_bytes(_save(rgb, "JPEG", exif=exif.tobytes(), quality=95))
    img = load_image(tmp_path / "rot.jpg")
    assert img.size == (rgb.size[1], rgb.size[0])


def test_arrays_and_pil_inputs(photo):
    img = Image.open(photo["coffee"]).convert("RGB")
    a = preprocess(photo["coffee"], PreprocessSpec())
    b = preprocess(img, PreprocessSpec())
    c = preprocess(np.asarray(img), PreprocessSpec())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert preprocess_batch([img, img], PreprocessSpec()).shape == (2, 3, 224, 224)
    with pytest.raises(ImageError, match="uint8"):
        preprocess(np.zeros((8, 8, 3), dtype=np.float32), PreprocessSpec())


def test_bgr_and_255_range(photo):
    rgb = preprocess(photo["coffee"], PreprocessSpec(mean=(0, 0, 0), std=(1, 1, 1)))
    bgr255 = preprocess(photo["coffee"], PreprocessSpec(mean=(0, 0, 0), std=(1, 1, 1), channel_order="BGR", input_range=255.0))
    np.testing.assert_allclose(bgr255[::-1] / 255.0, rgb, atol=1e-6)


def test_small_image_is_padded_and_grey_model(tmp_path):
    Image.new("RGB", (10, 6), (255, 0, 0)).save(tmp_path / "tiny.png")
    out = preprocess(tmp_path / "tiny.png", PreprocessSpec(input_size=(3, 32, 32), resize_size=32))
    assert out.shape == (3, 32, 32)
    grey = preprocess(tmp_path / "tiny.png", PreprocessSpec(input_size=(1, 28, 28), resize_size=28, mean=(0.5,), std=(0.5,)))
    assert grey.shape == (1, 28, 28)


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("empty.jpg", b"", "not a recognised image"),
        ("text.jpg", b"hello, I am not a JPEG\n" * 10, "not a recognised image"),
    ],
)
def test_bad_files_raise_image_error(tmp_path, name, data, reason):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ImageError, match=reason):
        load_image(tmp_path / name)


def test_truncated_and_missing(tmp_path, photo):
    data = (photo["rocket"]).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("RGB", (400, 400)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(tmp_path / "big.png")


def test_list_images_sorted_recursive_and_loop_safe(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b" / "c.JPG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "b" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert list_images(tmp_path) == [tmp_path / "a.png", tmp_path / "b" / "c.JPG"]
