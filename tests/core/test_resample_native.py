"""The native kernels (cpp/src/resample.c, bound as clsx.core._resample) against Pillow itself: the same pixels, bit for bit, on every
filter, shape, scale direction, pass order and crop; thread-safe; strict about its arguments."""

import threading

import numpy as np
import pytest
from PIL import Image

from clsx.core import preprocess as pp
from clsx.core.spec import PreprocessSpec

FILTERS = ["bilinear", "bicubic", "lanczos", "box", "hamming"]


pytestmark = pytest.mark.usefixtures("native_kernels")


def _pillow(img: Image.Image, size: int, ch: int, cw: int, interpolation: str) -> np.ndarray:
    return np.asarray(pp.center_crop(pp.resize_shorter(img, size, interpolation), ch, cw))


def _native(img: Image.Image, size: int, ch: int, cw: int, interpolation: str) -> np.ndarray:
    nw, nh = pp.resized_size(*img.size, size)
    left, top = pp.crop_offsets(nw, nh, ch, cw)
    return pp._native_resize_crop(np.asarray(img), nw, nh, left, top, cw, ch, interpolation)


@pytest.mark.parametrize("interpolation", FILTERS)
def test_same_pixels_as_pillow_on_random_shapes(interpolation):
    """Noise images (every level, no smooth areas to hide a rounding difference), 120 random shapes per filter:
    down by up to 30x and up by up to 40x, both pass orders, horizontal- or vertical-only resizes, crops from
    one pixel to the whole image; RGB and greyscale."""
    rng = np.random.default_rng(sum(map(ord, interpolation)))
    checked = 0
    for i in range(120):
        w, h = (int(v) for v in rng.integers(1, 60 if i % 4 == 0 else 1300, size=2))
        size = int(rng.integers(1, 400))
        nw, nh = pp.resized_size(w, h, size)
        ch, cw = int(rng.integers(1, nh + 1)), int(rng.integers(1, nw + 1))
        if i % 10 == 0:
            ch, cw = nh, nw  # the whole resized image
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        img = Image.fromarray(pixels).convert("L" if i % 3 == 0 else "RGB")
        ours, theirs = _native(img, size, ch, cw, interpolation), _pillow(img, size, ch, cw, interpolation)
        assert ours.shape == theirs.shape and np.array_equal(ours, theirs), ((w, h), size, (ch, cw), img.mode)
        checked += 1
    assert checked == 120


def test_same_pixels_on_real_photos_both_pass_orders(photos):
    """Real photos, wide and tall (Pillow 13 runs the vertical pass first on tall ones), at the sizes models use."""
    for path in photos:
        base = Image.open(path).convert("RGB")
        for img in (base, base.transpose(Image.Transpose.ROTATE_90), base.resize((base.width, base.height * 3))):
            for size, crop in ((256, 224), (342, 299), (36, 32)):
                for interpolation in ("bilinear", "bicubic"):
                    assert np.array_equal(_native(img, size, crop, crop, interpolation),
                                          _pillow(img, size, crop, crop, interpolation)), (path.name, img.size, size, interpolation)


def test_preprocess_is_the_same_tensor_with_either_resampler(photos, monkeypatch):
    spec = PreprocessSpec(resize_size=232, interpolation="bicubic")
    native = [pp.preprocess(p, spec) for p in photos]
    monkeypatch.setenv("CLSX_RESAMPLE", "pillow")
    assert pp.resampler() == "pillow"
    pillow = [pp.preprocess(p, spec) for p in photos]
    assert all(np.array_equal(a, b) for a, b in zip(native, pillow))


def test_the_pass_order_rule_is_the_same_in_c_and_python():
    """Pillow 13's pass order is written twice: in the native code and in Python (which drives Pillow itself
    when there is no native code); both must say the same on any shape."""
    rng = np.random.default_rng(13)
    for _ in range(2000):
        w, h, nw, nh = (int(v) for v in rng.integers(1, 900, size=4))
        assert pp._native.vertical_first(w, h, nw, nh) == pp._vertical_first(w, h, nw, nh), (w, h, nw, nh)


def test_threads_share_nothing(photos):
    """It runs without the GIL on a scratch buffer per thread: four threads at once give the serial results."""
    spec = PreprocessSpec()
    paths = photos * 3
    serial = [pp.preprocess(p, spec) for p in paths]
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        for i in range(k, len(paths), 4):
            results[i] = pp.preprocess(paths[i], spec)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(serial[i], results[i]) for i in range(len(paths)))


def test_scratch_too_small_is_reported_not_overrun():
    """The C function never writes past the scratch it is given: too small, it answers the size it needs
    and leaves ``out`` untouched."""
    src = np.random.default_rng(0).integers(0, 256, size=(500, 800, 3), dtype=np.uint8)
    out = np.full((224, 224, 3), 7, np.uint8)
    scratch = np.zeros(1000, np.uint8)
    args = (src, 800, 500, 3, 409, 256, 92, 16, 224, 224, 2, out)
    need = pp._native.resize_crop(*args, scratch)
    assert need > 1000 and (out == 7).all() and not scratch.any()
    assert pp._native.resize_crop(*args, np.empty(need, np.uint8)) == 0
    assert np.array_equal(out, np.asarray(Image.fromarray(src).resize((409, 256), Image.Resampling.BILINEAR))[16:240, 92:316])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"left": 200}, "out of range"),  # the crop leaves the resized image
        ({"filter": 0}, "out of range"),  # nearest is not a convolution
        ({"filter": 9}, "out of range"),
        ({"w": 801}, "do not match"),  # the buffer is smaller than the shape says
        ({"out": np.empty((224, 223, 3), np.uint8)}, "do not match"),
    ],
)
def test_bad_arguments_are_refused(change, message):
    src = np.zeros((500, 800, 3), np.uint8)
    a = {"w": 800, "h": 500, "c": 3, "nw": 409, "nh": 256, "left": 92, "top": 16, "cw": 224, "ch": 224, "filter": 2,
         "out": np.empty((224, 224, 3), np.uint8)} | change
    with pytest.raises(ValueError, match=message):
        pp._native.resize_crop(src, a["w"], a["h"], a["c"], a["nw"], a["nh"], a["left"], a["top"], a["cw"], a["ch"], a["filter"],
                               a["out"], np.empty(1 << 22, np.uint8))


def test_read_only_output_is_refused():
    out = np.empty((224, 224, 3), np.uint8)
    out.flags.writeable = False
    with pytest.raises((TypeError, BufferError, ValueError)):
        pp._native.resize_crop(np.zeros((500, 800, 3), np.uint8), 800, 500, 3, 409, 256, 92, 16, 224, 224, 2, out,
                               np.empty(1 << 22, np.uint8))


def _jpegs(tmp_path, photo_path) -> list:
    """The same photo as JPEGs of every kind libjpeg decodes differently: each chroma subsampling,
    progressive, optimized Huffman tables, restart markers, extreme qualities, greyscale, odd and tiny sizes."""
    base = Image.open(photo_path).convert("RGB")
    cases = [
        ("444", base, {"subsampling": 0}),
        ("422", base, {"subsampling": 1}),
        ("420", base, {"subsampling": 2}),
        ("411", base, {"subsampling": "4:1:1"}),
        ("progressive", base, {"progressive": True}),
        ("optimized", base, {"optimize": True, "quality": 100}),
        ("restarts", base, {"restart_marker_blocks": 3}),
        ("q5", base, {"quality": 5}),
        ("grey", base.convert("L"), {}),
        ("odd", base.resize((333, 251)), {"subsampling": 2}),
        ("tall", base.resize((131, 517)), {"subsampling": 1}),
        ("tiny", base.resize((9, 7)), {}),
    ]
    out = []
    for name, img, kw in cases:
        path = tmp_path / f"{name}.jpg"
        img.save(path, "JPEG", **kw)
        out.append(path)
    return out


def test_turbo_decode_gives_pillows_pixels(tmp_path, photo):
    """Where a JPEG's pixels come straight from libjpeg-turbo (no Pillow copy), they are Pillow's, to the bit."""
    assert pp._turbo is not None  # simplejpeg is a dependency
    for path in _jpegs(tmp_path, photo["chelsea"]):
        for channels in (3, 1):
            pillow = np.asarray(pp.load_image(path, channels=channels))
            ours, _ = pp._decode(path, channels, pixels=True)
            if Image.open(path).mode != ("L" if channels == 1 else "RGB"):
                assert isinstance(ours, Image.Image)  # a conversion is Pillow's job
                continue
            assert isinstance(ours, np.ndarray), path.name
            assert ours.shape == pillow.shape and np.array_equal(ours, pillow), (path.name, channels)


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8, 0, 9])
def test_turbo_decode_applies_every_exif_orientation_as_pillow_does(tmp_path, photo, orientation):
    """Phone photos carry EXIF turns: the native turn gives exif_transpose's pixels, for all eight (and an
    invalid value is no turn, as for Pillow); RGB and greyscale, odd sizes."""
    base = Image.open(photo["chelsea"]).convert("RGB").resize((301, 203))
    exif = Image.Exif()
    exif[0x0112] = orientation
    for mode in ("RGB", "L"):
        path = tmp_path / f"o{orientation}{mode}.jpg"
        base.convert(mode).save(path, exif=exif)
        channels = 1 if mode == "L" else 3
        ours, _ = pp._decode(path, channels, pixels=True)
        pillow = np.asarray(pp.load_image(path, channels=channels))
        assert isinstance(ours, np.ndarray) and ours.shape == pillow.shape and np.array_equal(ours, pillow), mode
    assert pillow.shape[:2] == ((301, 203) if orientation in (5, 6, 7, 8) else (203, 301))


def test_an_orientation_that_is_not_an_integer_is_pillows_call(tmp_path, photo, monkeypatch):
    """EXIF lets a file declare the orientation a rational (or anything): such a file gets exactly what
    Pillow's path gives it (Pillow turns a rational 6 like a 6), not an error."""
    import struct

    from PIL.TiffImagePlugin import IFDRational

    # a little-endian TIFF block with one entry: tag 0x0112, type 5 (RATIONAL), count 1, value at offset 26 = 6/1
    ifd = b"II*\x00" + struct.pack("<IHHHIIIII", 8, 1, 0x0112, 5, 1, 26, 0, 6, 1)
    path = tmp_path / "rational.jpg"
    Image.open(photo["chelsea"]).convert("RGB").resize((301, 203)).save(path, exif=b"Exif\x00\x00" + ifd)
    assert isinstance(Image.open(path).getexif()[0x0112], IFDRational)
    spec = PreprocessSpec(input_size=(3, 96, 160), resize_size=96)
    ours = pp.preprocess(path, spec)
    monkeypatch.setenv("CLSX_RESAMPLE", "pillow")
    monkeypatch.setattr(pp, "_turbo", None)
    assert np.array_equal(ours, pp.preprocess(path, spec))


def test_orient_refuses_bad_arguments():
    src = np.zeros((5, 7, 3), np.uint8)
    for o, out in ((1, np.empty(105, np.uint8)), (9, np.empty(105, np.uint8)), (6, np.empty(104, np.uint8))):
        with pytest.raises(ValueError, match="orient"):
            pp._native.orient(src, 7, 5, 3, o, out)


def test_turbo_decode_leaves_the_unusual_to_pillow(tmp_path, photo):
    """CMYK, truncated and non-JPEG files take Pillow's path: same pixels, same errors as before."""
    base = Image.open(photo["chelsea"]).convert("RGB")
    base.convert("CMYK").save(tmp_path / "cmyk.jpg")
    base.save(tmp_path / "photo.png")
    base.save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for name in ("cmyk.jpg", "photo.png"):
        ours, _ = pp._decode(tmp_path / name, 3, pixels=True)
        assert isinstance(ours, Image.Image), name
        assert np.array_equal(np.asarray(ours), np.asarray(pp.load_image(tmp_path / name))), name
    with pytest.raises(pp.ImageError, match="cannot decode image"):
        pp._decode(tmp_path / "cut.jpg", 3, pixels=True)


@pytest.mark.parametrize("spec", [PreprocessSpec(), PreprocessSpec(channel_order="BGR", input_range=255.0, mean=(104.0, 117.0, 123.0),
                                                                    std=(57.0, 57.0, 58.0)),
                                  PreprocessSpec(input_size=(1, 64, 64), mean=(0.45,), std=(0.22,))], ids=["rgb", "bgr-255", "grey"])
def test_native_normalization_is_numpys_to_the_bit(spec, monkeypatch):
    """The one-pass C normalization against numpy's multiply-then-add per channel (what runs without it)."""
    c = spec.input_size[0]
    pixels = np.random.default_rng(c).integers(0, 256, size=(97, 131, c), dtype=np.uint8)
    native = pp.to_tensor(pixels if c > 1 else pixels[:, :, 0], spec)
    monkeypatch.setenv("CLSX_RESAMPLE", "pillow")
    plain = pp.to_tensor(pixels if c > 1 else pixels[:, :, 0], spec)
    assert native.shape == plain.shape == (c, 97, 131) and np.array_equal(native, plain)
    assert native.view(np.uint32).tolist() == plain.view(np.uint32).tolist()  # bits, not just values
    with pytest.raises(ValueError, match="do not match"):
        pp._native.normalize(pixels, c, np.zeros(c + 1, np.float32), np.zeros(c + 1, np.float32), False, native)
