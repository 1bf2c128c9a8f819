"""The one image -> tensor implementation.

Every path in clsx that reads an image (export verification, calibration, ``clsx infer``, parity,
benchmarks) goes through :func:`load_image` and :func:`preprocess`. The steps and their order match
torchvision's ``Resize -> CenterCrop -> ToTensor -> Normalize`` on PIL images (which timm's eval
transforms also build), so a model sees the tensor it was trained and evaluated with:

1. decode with Pillow; apply the EXIF orientation;
2. convert any mode (L, P, RGBA, CMYK, I;16, F ...) to RGB, or to L for 1-channel models;
3. resize the shorter side to ``spec.resize_size`` with ``spec.interpolation`` (Pillow's resampling,
   antialiased, exactly what torchvision calls);
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
from pathlib import Path
from typing import IO, Iterable, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clsx.core.errors import ImageError
from clsx.core.spec import FLOAT_NCHW, InputFormat, PreprocessSpec

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
        path = Path(src)
        try:
            with _open_regular(path) as f, Image.open(f) as opened:
                _check_pixels(opened, path)
                opened.load()  # force a full decode now: truncated files fail here, not later
                img = ImageOps.exif_transpose(opened) or opened
                img = _to_mode(img, channels)
            return img
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
    img = ImageOps.exif_transpose(img) or img
    return _to_mode(img, channels)


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


def resize_shorter(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """torchvision ``Resize(size)``: shorter side -> ``size``, longer side scaled and truncated."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((new_w, new_h), _RESAMPLE[interpolation])


def center_crop(img: Image.Image, height: int, width: int) -> Image.Image:
    """torchvision ``CenterCrop``: round-half-even offsets; zero-pads an image smaller than the crop."""
    w, h = img.size
    if w < width or h < height:
        padded = Image.new(img.mode, (max(w, width), max(h, height)))
        padded.paste(img, ((max(w, width) - w) // 2, (max(h, height) - h) // 2))
        img, (w, h) = padded, padded.size
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
    return img.crop((left, top, left + width, top + height))


def to_tensor(img: Image.Image, spec: PreprocessSpec, fmt: InputFormat = FLOAT_NCHW) -> np.ndarray:
    """Cropped PIL image -> one image in ``fmt`` (default: normalized CHW float32)."""
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    if not fmt.normalized_on_host:
        out = pixels
    else:
        arr = pixels.astype(np.float32)
        if spec.input_range == 1.0:
            arr = arr / np.float32(255.0)
        mean = np.asarray(spec.mean, dtype=np.float32)
        std = np.asarray(spec.std, dtype=np.float32)
        out = ((arr - mean) / std).astype(fmt.dtype, copy=False)
    if fmt.layout == "NCHW":
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out)


def preprocess(src: ImageInput, spec: PreprocessSpec, fmt: InputFormat = FLOAT_NCHW) -> np.ndarray:
    """One image (path, PIL image or uint8 array) -> one tensor in ``fmt`` (default CHW float32), per ``spec``."""
    c, h, w = spec.input_size
    img = load_image(src, channels=c)
    img = resize_shorter(img, spec.resize_size, spec.interpolation)
    img = center_crop(img, h, w)
    return to_tensor(img, spec, fmt)


def preprocess_batch(images: Iterable[ImageInput], spec: PreprocessSpec, fmt: InputFormat = FLOAT_NCHW) -> np.ndarray:
    """Several images -> one batch in ``fmt`` (default NCHW float32); raises on the first image that fails."""
    tensors = [preprocess(im, spec, fmt) for im in images]
    if not tensors:
        return np.zeros(fmt.batch_shape(0, spec.input_size), dtype=fmt.dtype)
    return np.stack(tensors)
