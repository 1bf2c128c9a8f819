"""The one image -> tensor implementation.

Every path in clsx that reads an image (export verification, calibration, ``clsx infer``, parity,
benchmarks) goes through :func:`load_image` and :func:`preprocess`. The steps and their order match
torchvision's ``Resize -> CenterCrop -> ToTensor -> Normalize`` on PIL images (which timm's eval
transforms also build), so a model sees the tensor it was trained and evaluated with:

1. decode with Pillow (RGB and greyscale JPEGs: with libjpeg-turbo straight into a reused buffer, the
   same pixels as Pillow's decoder); apply the EXIF orientation;
2. convert any mode (L, P, RGBA, CMYK, I;16, F ...) to RGB, or to L for 1-channel models;
3. resize the shorter side to ``spec.resize_size`` with ``spec.interpolation`` (Pillow's resampling,
   antialiased, exactly what torchvision calls; computed by clsx's native port where it is built);
4. center-crop to ``spec.input_size`` (torchvision's rounding; zero padding if the image is smaller);
5. scale to ``[0, spec.input_range]``, reorder channels to ``spec.channel_order``, normalize with
   ``spec.mean``/``spec.std``; return CHW float32.

Graphs whose input is another :class:`~clsx.core.spec.InputFormat` get it from the same steps: a
``uint8`` input stops after the channel order (pixels 0..255; the graph normalizes), ``float16`` is the
float32 tensor rounded once, and ``NHWC`` is the same tensor channels-last.
"""

from __future__ import annotations

import os
import stat
import threading
from functools import lru_cache
from pathlib import Path
from typing import IO, Iterable, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clsx.core.errors import ImageError
from clsx.core.spec import FLOAT_NCHW, InputFormat, PreprocessSpec

try:  # the native resampler (setup.py builds it where a C compiler exists): Pillow's pixels, faster
    from clsx.core import _resample as _native
except ImportError:  # pragma: no cover - no compiler at install time: Pillow does the same work
    _native = None

try:  # libjpeg-turbo straight into a reused numpy buffer; the same decoder as Pillow's, without its copies
    import simplejpeg as _turbo
except ImportError:  # pragma: no cover - a dependency; without it Pillow decodes everything
    _turbo = None

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# Pillow's decompression-bomb guard stays on: images above Image.MAX_IMAGE_PIXELS (about 89 Mpx)
# warn, above twice that they are refused. clsx turns both into a per-image ImageError.


def load_image(src: ImageInput, *, channels: int = 3) -> Image.Image:
    """Decode ``src`` (path, PIL image or HWC/HW uint8 array) to an upright RGB (or L) PIL image.

    Raises :class:`ImageError` with the reason for files that are missing, unreadable, not images,
    truncated, or too large to decode safely.
    """
    if isinstance(src, Image.Image):
        img = src
    elif isinstance(src, np.ndarray):
        img = _from_array(src)
    else:
        return _decode(Path(src), channels)[0]
    return _to_mode(_upright(img), channels)


def load_image_scaled(src: str | os.PathLike, resize_size: int, *, channels: int = 3) -> tuple[Image.Image, tuple[float, float] | None]:
    """:func:`load_image` of a file, a JPEG decoded at the DCT scale :func:`dct_scale` allows for
    ``resize_size``; also returns the original image's extent in the decoded pixels (``None`` when
    decoded at full size)."""
    return _decode(Path(src), channels, resize_size)


def dct_scale(width: int, height: int, resize_size: int) -> int:
    """The DCT scale (1, 2, 4 or 8) at which a ``width`` x ``height`` JPEG may be decoded for a model that
    resizes its shorter side to ``resize_size``: the largest that keeps the decoded shorter side at least
    twice ``resize_size`` (the rule of ``--fast-decode``; C++ does not implement it)."""
    short = min(width, height)
    for s in (8, 4, 2):
        if short // s >= 2 * resize_size:
            return s
    return 1


def _decode(path: Path, channels: int, resize_size: int | None = None, *,
            pixels: bool = False) -> tuple[Image.Image | np.ndarray, tuple[float, float] | None]:
    """Decode one file (DCT-scaled for ``resize_size``, see :func:`dct_scale`); errors as ImageError.

    ``pixels``: an upright RGB (L) JPEG may come back as an HxWxC uint8 array in this thread's decode
    buffer (:func:`_turbo_pixels`), valid until this thread decodes again."""
    try:
        with _open_regular(path) as f, Image.open(f) as opened:
            _check_pixels(opened, path)
            if pixels and resize_size is None and opened.format == "JPEG" and opened.mode == ("L" if channels == 1 else "RGB"):
                arr = _turbo_pixels(f, opened)
                if arr is not None:
                    return arr, None
            source = None
            if resize_size is not None and opened.format == "JPEG":
                w, h = opened.size
                s = dct_scale(w, h, resize_size)
                if s > 1 and opened.draft(None, (w // s, h // s)) is not None:
                    source = (w / s, h / s) if opened.size != (w, h) else None
            opened.load()  # force a full decode now: truncated files fail here, not later
            img = _upright(opened)
            if source is not None and img.size[0] != opened.size[0]:
                source = (source[1], source[0])  # EXIF turned it by 90 degrees
            return _to_mode(img, channels), source
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a recognised image file") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: refused, too many pixels for a safe decode ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated/corrupt data, symlink loops ...
        raise ImageError(f"{path}: cannot decode image ({exc})") from None


_buffers = threading.local()  # per thread: decoded and turned pixels, the resize's scratch (see _thread_buffer)


def _turbo_pixels(f: IO[bytes], opened: Image.Image) -> np.ndarray | None:
    """The upright pixels of the JPEG open in ``opened`` (Pillow mode RGB or L, read from ``f``), decoded by
    libjpeg-turbo (simplejpeg) into this thread's reused buffer, turned as its EXIF orientation says by the
    native code (Pillow's ``exif_transpose``, pixel for pixel); ``None`` where Pillow must decode instead:
    no simplejpeg, a turn without the native code, or anything libjpeg warns about (corrupt or truncated
    data: Pillow then decodes it, or refuses it with its usual reason, as before).

    The same pixels as Pillow's decode: both are libjpeg-turbo with its defaults (accurate integer IDCT,
    fancy upsampling) and its YCbCr->RGB tables; Pillow then copies them into 4-byte pixels and numpy copies
    them again, which this skips (tests compare the two on every subsampling, progressive, restart markers,
    greyscale, odd sizes and all eight orientations)."""
    orientation = opened.getexif().get(0x0112, 1)
    if type(orientation) is not int:  # a file may declare it a rational, a string ...: Pillow's path decides
        return None
    turn = 2 <= orientation <= 8  # anything else is no turn, for Pillow too
    if _turbo is None or (turn and _native is None):
        return None
    ch = 1 if opened.mode == "L" else 3
    w, h = opened.size
    f.seek(0)
    try:
        arr = _turbo.decode_jpeg(f.read(), colorspace="GRAY" if ch == 1 else "RGB", fastdct=False, fastupsample=False,
                                 buffer=_thread_buffer("decoded", w * h * ch), strict=True)
    except (ValueError, OSError):
        return None
    if arr.shape[:2] != (h, w):  # pragma: no cover - a header Pillow and libjpeg read differently
        return None
    if turn:
        turned = _thread_buffer("turned", w * h * ch)[: w * h * ch]
        _native.orient(arr, w, h, ch, orientation, turned)
        arr = turned.reshape((w, h, ch) if orientation >= 5 else (h, w, ch))
    return arr[:, :, 0] if ch == 1 else arr


def _thread_buffer(name: str, size: int) -> np.ndarray:
    """A uint8 buffer of at least ``size`` bytes, this thread's own and reused (up to ``_SCRATCH_KEPT``)."""
    buf = getattr(_buffers, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, np.uint8)
        if size <= _SCRATCH_KEPT:
            setattr(_buffers, name, buf)
    return buf


def _upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (no copy when it needs no turn)."""
    if img.getexif().get(0x0112, 1) in (1, None):
        return img
    return ImageOps.exif_transpose(img) or img


def _open_regular(path: Path) -> IO[bytes]:
    """``path`` opened for reading only if it is a regular file: a FIFO, socket or device named
    ``x.jpg`` is refused at once instead of blocking forever (opened non-blocking, checked with
    fstat on the descriptor itself, so nothing can be swapped in between)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ImageError(f"{path}: is a directory, not an image")
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise ImageError(f"{path}: not a regular file ({kind}); only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_pixels(img: Image.Image, path: Path) -> None:
    """Refuse images above Pillow's MAX_IMAGE_PIXELS before decoding them (Pillow itself only warns
    up to twice that). A size check, not a warnings filter: it is thread-safe."""
    limit = Image.MAX_IMAGE_PIXELS
    w, h = img.size
    if limit is not None and w * h > limit:
        raise ImageError(f"{path}: refused, too many pixels for a safe decode ({w}x{h} > {limit} pixels)")


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ImageError(f"image arrays must be uint8 HxW or HxWx3 RGB; got dtype {arr.dtype}")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
        return Image.fromarray(arr.squeeze(2) if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    raise ImageError(f"image arrays must be HxW, HxWx1, HxWx3 or HxWx4; got shape {arr.shape}")


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode to RGB (or L). 16-bit and float greyscale are rescaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if img.mode == "F" and arr.max() <= 1.0:
            hi = 1.0
        img = Image.fromarray(np.clip(np.rint(arr / hi * 255.0), 0, 255).astype(np.uint8), mode="L")
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """torchvision ``Resize(size)``'s output (width, height): shorter side ``size``, the longer scaled
    and truncated."""
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return width, height
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def resize_shorter(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """torchvision ``Resize(size)``: shorter side -> ``size``, longer side scaled and truncated."""
    new_size = resized_size(*img.size, size)
    if new_size == img.size:
        return img
    return img.resize(new_size, _RESAMPLE[interpolation])


def crop_offsets(width: int, height: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """torchvision ``CenterCrop``'s (left, top) in an image of ``width`` x ``height`` at least the crop's size."""
    return int(round((width - crop_w) / 2.0)), int(round((height - crop_h) / 2.0))


def center_crop(img: Image.Image, height: int, width: int) -> Image.Image:
    """torchvision ``CenterCrop``: round-half-even offsets; zero-pads an image smaller than the crop."""
    w, h = img.size
    if w < width or h < height:
        padded = Image.new(img.mode, (max(w, width), max(h, height)))
        padded.paste(img, ((max(w, width) - w) // 2, (max(h, height) - h) // 2))
        img, (w, h) = padded, padded.size
    left, top = crop_offsets(w, h, height, width)
    return img.crop((left, top, left + width, top + height))


def resize_crop(img: Image.Image, size: int, height: int, width: int, interpolation: str,
                source: tuple[float, float] | None = None) -> Image.Image | np.ndarray:
    """``center_crop(resize_shorter(img, size, interpolation), height, width)``, bit for bit: a PIL image,
    or the same pixels as an HxWxC (HxW) uint8 array when the native resampler made them.

    Pillow resizes in two passes, each rounded to uint8: horizontal then vertical, or vertical first
    when the height shrinks by more than twice what the width does (Pillow 13). Each output pixel of
    a pass depends only on its own window, so only what the crop keeps needs computing. The native
    resampler (:func:`resampler`, ``cpp/src/resample.c``: Pillow's weights and integer sums, both
    passes cut to the crop, vectorized) does exactly that for RGB and L images. Without it, Pillow
    runs the first pass whole, the crop's columns (rows) are cut from it at integer pixels, and the
    second pass runs on those alone (an 800x500 photo to 224: the vertical pass over 224 columns
    instead of 410). Either way the same pixels as resize-then-crop.
    Not done: Pillow's ``box=`` (resample a region), which takes the box as 32-bit floats and places
    output pixel ``i`` at ``box0 + (i + 0.5) * scale``, moving the filter weights by ~1e-5 and pixels
    by one level or more on 7-15 % of image sizes.

    ``source`` (a DCT-scaled decode: the original image's extent in ``img`` pixels, see
    :func:`load_image_scaled`) is approximate on purpose: the output geometry is the original image's
    and only the crop's region of ``img`` is resampled, straight to the crop, with ``box=``.
    """
    if source is None:
        return _resize_crop_exact(img, size, height, width, interpolation)
    nw, nh = resized_size(round(source[0]), round(source[1]), size)
    if nw < width or nh < height or interpolation == "nearest":
        return center_crop(img.resize((nw, nh), _RESAMPLE[interpolation], box=(0, 0, *source)), height, width)
    left, top = crop_offsets(nw, nh, height, width)
    fx, fy = source[0] / nw, source[1] / nh
    box = (left * fx, top * fy, (left + width) * fx, (top + height) * fy)
    return img.resize((width, height), _RESAMPLE[interpolation], box=box)


def resampler() -> str:
    """Which code resizes exact images: ``"native"`` (clsx's vectorized port in ``cpp/src/resample.c``)
    or ``"pillow"`` (no C compiler at install time, or ``CLSX_RESAMPLE=pillow``). Same pixels either way."""
    return "native" if _native is not None and os.environ.get("CLSX_RESAMPLE", "").lower() != "pillow" else "pillow"


def _vertical_first(w: int, h: int, nw: int, nh: int) -> bool:
    """Pillow 13's pass order (``Resample.c``): vertical first when the height shrinks by more than twice
    what the width does. Each pass rounds to uint8, so the order changes pixels by a level or more."""
    dy, dx = h - nh, w - nw
    return dy > 0 and dy > 2 * dx


_SCRATCH_KEPT = 64 << 20  # bytes a thread keeps per buffer between images (larger ones are allocated per image)


def _native_resize_crop(src: np.ndarray, nw: int, nh: int, left: int, top: int, width: int, height: int,
                        interpolation: str) -> np.ndarray:
    """The crop (left, top, width x height) of ``src`` (HxWxC or HxW uint8) resized to nw x nh, by the
    native resampler, with this thread's scratch buffer (reused: fresh pages per image cost more than the
    resize)."""
    h, w = src.shape[:2]
    out = np.empty((height, width, *src.shape[2:]), dtype=np.uint8)
    args = (np.ascontiguousarray(src), w, h, 1 if src.ndim == 2 else src.shape[2], nw, nh, left, top, width, height,
            int(_RESAMPLE[interpolation]), out)
    need = _native.resize_crop(*args, _thread_buffer("scratch", 0))
    if need:  # the scratch this thread had was too small: nothing was written
        _native.resize_crop(*args, _thread_buffer("scratch", need))
    return out


def _resize_crop_exact(img: Image.Image | np.ndarray, size: int, height: int, width: int,
                       interpolation: str) -> Image.Image | np.ndarray:
    if isinstance(img, np.ndarray):  # decoded pixels (HxWxC / HxW uint8)
        h, w = img.shape[:2]
        nw, nh = resized_size(w, h, size)
        if resampler() == "native" and interpolation != "nearest" and nw >= width and nh >= height and (nw, nh) != (w, h):
            left, top = crop_offsets(nw, nh, height, width)
            return _native_resize_crop(img, nw, nh, left, top, width, height, interpolation)
        img = Image.fromarray(img)
    nw, nh = resized_size(*img.size, size)
    w, h = img.size
    if interpolation == "nearest" or nw < width or nh < height or (nw, nh) == (w, h):
        return center_crop(resize_shorter(img, size, interpolation), height, width)
    left, top = crop_offsets(nw, nh, height, width)
    if img.mode in ("RGB", "L") and resampler() == "native":
        return _native_resize_crop(np.asarray(img), nw, nh, left, top, width, height, interpolation)
    if nw == w or nh == h:
        return center_crop(resize_shorter(img, size, interpolation), height, width)
    resample = _RESAMPLE[interpolation]
    if _vertical_first(w, h, nw, nh):
        rows = img.resize((w, nh), resample).crop((0, top, w, top + height))
        return rows.resize((nw, height), resample).crop((left, 0, left + width, height))
    columns = img.resize((nw, h), resample).crop((left, 0, left + width, h))
    return columns.resize((width, nh), resample).crop((0, top, width, top + height))


@lru_cache(maxsize=256)
def _scale_offset(spec: PreprocessSpec, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, ``x * scale + offset`` = ``(x / 255 * input_range - mean) / std`` (float32).

    Computed in float64 from the float32 values of mean, std and input_range (what the C++ library
    stores), then rounded once, so C++ (``cpp/src/preprocess.cpp``) gives the same bits.
    """
    f32 = lambda v: np.asarray(v, np.float32).astype(np.float64)  # noqa: E731
    rng = 255.0 if spec.input_range == 1.0 else 255.0 / float(f32(spec.input_range))
    std, mean = f32(spec.std)[:channels], f32(spec.mean)[:channels]
    return (1.0 / (rng * std)).astype(np.float32), (-mean / std).astype(np.float32)


def normalize_pixels(pixels: np.ndarray, spec: PreprocessSpec, layout: str = "NCHW") -> np.ndarray:
    """A uint8 batch of pixels (``layout``, channels already in ``spec.channel_order``) -> the NCHW
    float32 batch :func:`to_tensor` makes of the same pixels, bit for bit (what a ``uint8`` graph computes
    inside, and what its verification feeds the float reference)."""
    x = np.asarray(pixels, dtype=np.uint8)
    if layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    scale, offset = _scale_offset(spec, x.shape[1])
    out = x * scale[None, :, None, None]
    out += offset[None, :, None, None]
    return np.ascontiguousarray(out, dtype=np.float32)


def pixel_constants(spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset), float32 per channel: ``x * scale + offset`` normalizes pixels as the host does."""
    return _scale_offset(spec, spec.input_size[0])


def to_tensor(img: Image.Image | np.ndarray, spec: PreprocessSpec, fmt: InputFormat = FLOAT_NCHW, out: np.ndarray | None = None) -> np.ndarray:
    """Cropped image (PIL, or an HxWxC / HxW uint8 array) -> one image in ``fmt`` (default: normalized CHW float32), written into
    ``out`` when given (a batch slot: no extra copy).

    Float formats are ``x * scale + offset`` with per-channel constants (:func:`_scale_offset`), channel
    order and the CHW transpose folded in: one native pass for NCHW float32 (``clsx_normalize``), else one
    numpy pass per channel; the same bits either way, no float HWC intermediate.
    """
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    c = pixels.shape[2]
    order = [c - 1 - i for i in range(c)] if spec.channel_order == "BGR" else list(range(c))
    shape = (c, *pixels.shape[:2]) if fmt.layout == "NCHW" else pixels.shape
    if out is None:
        out = np.empty(shape, dtype=fmt.dtype)
    if not fmt.normalized_on_host:
        ordered = pixels if order == sorted(order) else pixels[:, :, order]
        np.copyto(out, ordered.transpose(2, 0, 1) if fmt.layout == "NCHW" else ordered)
        return out
    scale, offset = _scale_offset(spec, c)
    if fmt.dtype == "float32" and fmt.layout == "NCHW":
        if resampler() == "native" and pixels.flags.c_contiguous and out.flags.c_contiguous and out.dtype == np.float32:
            _native.normalize(pixels, c, scale, offset, spec.channel_order == "BGR", out)  # the same bits, one pass
            return out
        for oc, ic in enumerate(order):
            np.multiply(pixels[:, :, ic], scale[oc], out=out[oc])
            out[oc] += offset[oc]
        return out
    arr = pixels[:, :, order] * scale + offset  # float16 / NHWC: the float32 values, then converted once
    np.copyto(out, arr.transpose(2, 0, 1) if fmt.layout == "NCHW" else arr, casting="same_kind")
    return out


def preprocess(src: ImageInput, spec: PreprocessSpec, fmt: InputFormat = FLOAT_NCHW, *, fast_decode: bool | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
    """One image (path, PIL image or uint8 array) -> one tensor in ``fmt`` (default CHW float32), per ``spec``.

    ``fast_decode`` (default: ``spec.fast_decode``): decode large JPEGs at 1/2, 1/4 or 1/8 scale
    (libjpeg's DCT scaling) when the result keeps at least twice the resize size (:func:`dct_scale`);
    approximate, see the README.
    ``out``: write into this array (e.g. a slot of a batch) instead of a new one.
    """
    c, h, w = spec.input_size
    source: tuple[float, float] | None = None
    if (spec.fast_decode if fast_decode is None else fast_decode) and not isinstance(src, (Image.Image, np.ndarray)):
        img, source = load_image_scaled(src, spec.resize_size, channels=c)
    elif resampler() == "native" and not isinstance(src, (Image.Image, np.ndarray)):
        img = _decode(Path(src), c, pixels=True)[0]  # pixels straight from libjpeg-turbo where that is the same
    else:
        img = load_image(src, channels=c)
    img = resize_crop(img, spec.resize_size, h, w, spec.interpolation, source=source)
    return to_tensor(img, spec, fmt, out=out)


def preprocess_batch(images: Iterable[ImageInput], spec: PreprocessSpec, fmt: InputFormat = FLOAT_NCHW) -> np.ndarray:
    """Several images -> one batch in ``fmt`` (default NCHW float32); raises on the first image that fails."""
    images = list(images)
    batch = np.empty(fmt.batch_shape(len(images), spec.input_size), dtype=fmt.dtype)
    for i, im in enumerate(images):
        preprocess(im, spec, fmt, out=batch[i])
    return batch
