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


# -- the one-pass tensor, input formats, DCT-scaled decode (issue: preprocessing that keeps up) ---------

def _reference(img: Image.Image, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """What the steps say, written plainly: Pillow resize of the whole image, crop, float64 maths."""
    from clsx.core.preprocess import center_crop, resize_shorter

    c, h, w = spec.input_size
    img = img.convert("L" if c == 1 else "RGB")
    crop = np.asarray(center_crop(resize_shorter(img, spec.resize_size, spec.interpolation), h, w))
    crop = crop[:, :, None] if crop.ndim == 2 else crop
    if spec.channel_order == "BGR":
        crop = crop[:, :, ::-1]
    x = crop.astype(np.float64) / (255.0 if spec.input_range == 1.0 else 1.0)
    return crop, ((x - np.asarray(spec.mean)) / np.asarray(spec.std)).transpose(2, 0, 1)


FORMAT_SPECS = [
    PreprocessSpec(),
    PreprocessSpec(resize_size=232, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3),
    PreprocessSpec(input_size=(3, 240, 320), resize_size=250, interpolation="lanczos", channel_order="BGR",
                   input_range=255.0, mean=(104.0, 117.0, 123.0), std=(57.0, 57.0, 58.0)),
    PreprocessSpec(input_size=(1, 64, 64), resize_size=73, interpolation="box", mean=(0.45,), std=(0.22,)),
]


@pytest.mark.parametrize("spec", FORMAT_SPECS, ids=["tv-224", "bicubic-half", "bgr-255-nonsquare", "grey"])
def test_every_format_is_the_reference(photos, spec):
    """uint8 pixels are exactly the plain resize+crop; float32 NCHW/NHWC and float16 are its normalization
    (float32 rounding only); a batch written in place equals the images one by one."""
    from clsx.core.spec import InputFormat

    for path in photos[::2]:
        crop, ref = _reference(Image.open(path), spec)
        u8 = preprocess(path, spec, InputFormat("uint8", "NHWC"))
        assert u8.dtype == np.uint8 and np.array_equal(u8, crop), path.name
        assert np.array_equal(preprocess(path, spec, InputFormat("uint8", "NCHW")), crop.transpose(2, 0, 1))
        f32 = preprocess(path, spec)
        assert f32.dtype == np.float32 and f32.shape == spec.input_size
        np.testing.assert_allclose(f32, ref, atol=2e-6 * max(1.0, np.abs(ref).max()), rtol=0)
        np.testing.assert_array_equal(preprocess(path, spec, InputFormat("float32", "NHWC")), f32.transpose(1, 2, 0))
        np.testing.assert_array_equal(preprocess(path, spec, InputFormat("float16", "NCHW")), f32.astype(np.float16))
    batch = preprocess_batch(photos[:3], spec)
    np.testing.assert_array_equal(batch[1], preprocess(photos[1], spec))


def test_tensor_detects_a_wrong_normalization(photo):
    """The comparison above can fail: the same pixels normalized with another std differ clearly."""
    spec = PreprocessSpec()
    _, ref = _reference(Image.open(photo["coffee"]), PreprocessSpec(std=(0.25, 0.25, 0.25)))
    assert np.abs(preprocess(photo["coffee"], spec) - ref).max() > 0.05


@pytest.mark.parametrize("resampler", ["native", "pillow"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "lanczos", "box", "hamming"])
def test_resizing_only_what_the_crop_keeps_is_bit_exact(photo, interpolation, resampler, monkeypatch, request):
    """resize_crop computes only what the crop keeps (the native resampler: both passes; Pillow: the second
    pass): it must give the pixels of resize-then-crop on any shape (wide, tall: Pillow's pass order
    flips; up and down; crops larger than the image), RGB and greyscale."""
    from clsx.core.preprocess import center_crop, resize_crop, resize_shorter
    from clsx.core import preprocess as pp

    if resampler == "native":
        request.getfixturevalue("native_kernels")
    monkeypatch.setenv("CLSX_RESAMPLE", resampler)
    assert pp.resampler() == resampler

    rng = np.random.default_rng(sum(map(ord, interpolation)))
    base = Image.open(photo["chelsea"]).convert("RGB")
    for i in range(60):
        w, h = (int(v) for v in rng.integers(8, 700, size=2))
        img = base.resize((w, h))
        img = img.convert("L") if i % 3 == 0 else img
        size = int(rng.integers(8, 300))
        ch, cw = (int(v) for v in rng.integers(4, size + 30, size=2))
        ours = np.asarray(resize_crop(img, size, ch, cw, interpolation))
        plain = np.asarray(center_crop(resize_shorter(img, size, interpolation), ch, cw))
        assert ours.shape == plain.shape and np.array_equal(ours, plain), ((w, h), size, (ch, cw))


def test_dct_scale_rule():
    from clsx.core.preprocess import dct_scale

    assert dct_scale(4000, 3000, 256) == 4  # 750 px >= 2 x 256; 1/8 would give 375 < 512
    assert dct_scale(3000, 4000, 256) == 4
    assert dct_scale(6000, 4000, 256) == 4  # 1/8: 500 < 512
    assert dct_scale(8192, 4096, 256) == 8
    assert dct_scale(1200, 1100, 256) == 2
    assert dct_scale(800, 500, 256) == 1  # 250 < 512: decoded at full size
    assert dct_scale(4000, 3000, 600) == 2


def test_fast_decode_on_a_large_jpeg(tmp_path, photo):
    """A 4000x3000 JPEG decodes at 1/4 scale: the tensor stays close to the exact one (the approximation
    is the scaled IDCT, not the geometry: a shifted crop would differ far more); small JPEGs and other
    formats are untouched."""
    from clsx.core.preprocess import load_image_scaled

    big = Image.open(photo["chelsea"]).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    big.save(tmp_path / "big.jpg", quality=90)
    img, source = load_image_scaled(tmp_path / "big.jpg", 256)
    assert img.size == (1000, 750) and source == (1000.0, 750.0)
    spec = PreprocessSpec()
    exact, fast = preprocess(tmp_path / "big.jpg", spec), preprocess(tmp_path / "big.jpg", spec, fast_decode=True)
    diff = np.abs(exact - fast) * np.asarray(spec.std)[:, None, None]
    assert diff.mean() < 1.0 / 255 and diff.max() < 12.0 / 255
    shifted = np.abs(exact[:, :, 2:] - fast[:, :, :-2]) * np.asarray(spec.std)[:, None, None]
    assert shifted.mean() > 2 * diff.mean()
    for small in (photo["rocket"], photo["coffee"]):  # a 640x427 JPEG, a PNG
        np.testing.assert_array_equal(preprocess(small, spec, fast_decode=True), preprocess(small, spec))


def test_fast_decode_follows_exif_orientation(tmp_path, photo):
    from clsx.core.preprocess import load_image_scaled

    big = Image.open(photo["chelsea"]).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6
    big.save(tmp_path / "rot.jpg", quality=90, exif=exif.tobytes())
    img, source = load_image_scaled(tmp_path / "rot.jpg", 256)
    assert img.size == (750, 1000) and source == (750.0, 1000.0)
    spec = PreprocessSpec()
    diff = np.abs(preprocess(tmp_path / "rot.jpg", spec) - preprocess(tmp_path / "rot.jpg", spec, fast_decode=True))
    assert diff.mean() * 0.229 < 1.0 / 255


def test_fast_decode_is_part_of_the_spec(tmp_path, photo):
    """--fast-decode is recorded in the spec (so in the metadata) only when on, and preprocess follows it."""
    from clsx.core.spec import PreprocessOverrides, resolve_preprocess

    plain = PreprocessSpec()
    assert "fast_decode" not in plain.to_dict() and PreprocessSpec.from_dict(plain.to_dict()) == plain
    fast = resolve_preprocess(plain, PreprocessOverrides(fast_decode=True))
    assert fast.to_dict()["fast_decode"] is True and PreprocessSpec.from_dict(fast.to_dict()) == fast
    big = Image.open(photo["coffee"]).convert("RGB").resize((2400, 1600), Image.Resampling.BICUBIC)
    big.save(tmp_path / "big.jpg", quality=90)
    np.testing.assert_array_equal(preprocess(tmp_path / "big.jpg", fast), preprocess(tmp_path / "big.jpg", plain, fast_decode=True))
    assert not np.array_equal(preprocess(tmp_path / "big.jpg", fast), preprocess(tmp_path / "big.jpg", plain))
    with pytest.raises(Exception, match="fast_decode"):
        PreprocessSpec.from_dict({"fast_decode": "yes"})
