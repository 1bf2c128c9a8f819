"""Fixtures for clsx.scale: the tiny ONNX model, image folders with bad files, a local Ray instance."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from runtimes.tiny_models import tiny_onnx_once

from clsx.zoo import samples


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """32x32 CIFAR-style net, 10 labelled classes, dynamic batch, clsx metadata inside."""
    return tiny_onnx_once(tmp_path_factory)


@pytest.fixture(scope="session")
def images(tmp_path_factory, photos) -> Path:
    """Real photos (small JPEG views, one nested folder) plus files that cannot be decoded."""
    root = tmp_path_factory.mktemp("scale-images") / "images"
    samples.write_photo_variants(root, photos[:6], per_photo=2, size=48)
    samples.write_photo_variants(root / "nested", photos[6:9], per_photo=1, size=48)
    good = (root / f"{photos[0].stem}_00.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "text.jpg").write_text("not an image\n")
    (root / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="session")
def hostile_images(tmp_path_factory, images) -> Path:
    """``images`` plus a symlink loop and a dangling symlink (local listing only)."""
    root = tmp_path_factory.mktemp("scale-hostile") / "images"
    shutil.copytree(images, root)
    (root / "loop.jpg").symlink_to("loop.jpg")
    (root / "gone.jpg").symlink_to("deleted.jpg")
    return root


@pytest.fixture(scope="module")
def local_ray():
    """A local 2-CPU Ray instance for this module (the small case the issue is about); shut down after."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'clsx[ray]'); the Ray Data tests need it")
    pytest.importorskip("ray.data", reason="ray is installed without Ray Data (pip install 'clsx[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def within():
    """``within(seconds, fn, *args)``: run ``fn`` in a thread; fail the test (instead of hanging the
    suite) if it is still running after ``seconds``."""
    return _within


def _within(seconds: float, fn, *args, **kwargs):
    result: dict = {}

    def target():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="clsx-test-ray")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the Ray pipeline made no end after {seconds:.0f} s: it stalled")
    if "error" in result:
        raise result["error"]
    return result.get("value")
