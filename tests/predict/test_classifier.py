"""Classifier: spec + runtime + labels -> top-k, for paths, PIL images and arrays; errors per image."""

import logging

import numpy as np
import pytest
from PIL import Image
from runtimes.tiny_models import tiny_model, tiny_onnx_once

import clsx
from clsx.core.agreement import softmax
from clsx.predict.classifier import Classifier
from clsx.predict.prediction import top_k
from clsx.core.errors import SpecError


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny):
    return tiny_onnx_once(tmp_path_factory)


def test_softmax_and_top_k():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 7)).astype(np.float32) * 5
    probs = softmax(logits)
    manual = np.exp(logits.astype(np.float64)) / np.exp(logits.astype(np.float64)).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, manual, rtol=1e-12)
    idx, p = top_k(logits, 3)
    assert idx.shape == (4, 3)
    for row in range(4):
        assert list(idx[row]) == list(np.argsort(-logits[row])[:3])
        np.testing.assert_allclose(p[row], manual[row, idx[row]])
    tie_idx, _ = top_k(np.array([[1.0, 3.0, 3.0, 0.0]], np.float32), 2)
    assert list(tie_idx[0]) == [1, 2]  # ties: lower class index first
    assert np.isfinite(softmax(np.array([[1e4, -1e4]], np.float32))).all()


def test_paths_pil_and_arrays_give_the_same_predictions(tiny_onnx, photos):
    clf = Classifier(clsx.open(tiny_onnx), batch_size=4)
    paths = photos[:6]
    by_path = clf.predict(paths, topk=3)
    pil = [Image.open(p) for p in paths]
    by_pil = clf.predict(pil, topk=3)
    arrays = [np.asarray(im.convert("RGB")) for im in pil]
    by_array = clf.predict(arrays, topk=3)
    assert [p.source for p in by_path] == [str(p) for p in paths]
    assert [p.source for p in by_array] == [f"<image {i}>" for i in range(6)]
    for a, b, c in zip(by_path, by_pil, by_array):
        assert a.ok and a.indices == b.indices == c.indices
        np.testing.assert_allclose(a.probs, c.probs, rtol=1e-6)
        assert a.labels == tuple(f"class{i}" for i in a.indices)
        assert list(a.probs) == sorted(a.probs, reverse=True) and sum(a.probs) <= 1.0 + 1e-9
    single = clf.predict(paths[0], topk=3)  # one image in, a list of one out
    assert len(single) == 1 and single[0].indices == by_path[0].indices


def test_bad_images_become_error_predictions(tiny_onnx, photos, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    clf = Classifier(tiny_onnx)  # opened by the Classifier itself
    preds = clf.predict([photos[0], junk, tmp_path / "gone.png", photos[1]], topk=2)
    assert [p.ok for p in preds] == [True, False, False, True]
    assert "not a recognised image" in preds[1].error and "no such file" in preds[2].error
    assert preds[1].indices == () and preds[1].source == str(junk)
    assert preds[1].to_dict() == {"path": str(junk), "topk": [], "error": preds[1].error}
    clf.close()
    assert not clf.runtime.is_active


def test_recycled_tensors_give_each_image_its_own_prediction(tiny_onnx, photos, tmp_path):
    """The pipeline recycles image tensors and one batch buffer: over many batches, with failures
    between good images and a short last batch, every prediction is still that image's alone."""
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    images = [junk if i % 7 == 3 else photos[(i * 5) % len(photos)] for i in range(45)]
    clf = Classifier(clsx.open(tiny_onnx), batch_size=4, workers=3)
    preds = clf.predict(images, topk=3)
    for img, pred in zip(images, preds):
        if img == junk:
            assert not pred.ok
            continue
        logits = clf.runtime.run(clf.load(img)[None])
        idx, probs = top_k(logits, 3)
        assert pred.ok and pred.indices == tuple(idx[0]), img
        np.testing.assert_allclose(pred.probs, probs[0], rtol=1e-6)
    assert len({p.indices for p in preds if p.ok}) > 1  # the photos are told apart: the check above can fail


def test_topk_is_capped_at_the_class_count(tiny, photos, caplog):
    clf = Classifier(clsx.open(tiny))
    with caplog.at_level(logging.WARNING, logger="clsx"):
        preds = clf.predict(photos[:1], topk=50)
    assert len(preds[0].indices) == 10 and abs(sum(preds[0].probs) - 1.0) < 1e-6
    assert "topk 50 is more than the model's 10 classes" in caplog.text
    with pytest.raises(SpecError, match="topk must be at least 1"):
        clf.predict(photos[:1], topk=0)


def test_streaming_reads_a_bounded_window_ahead(tiny):
    """Memory stays flat: the pipeline never pulls more than ~2 batches + workers images ahead."""
    pulled = 0

    def images():
        nonlocal pulled
        rng = np.random.default_rng(0)
        for _ in range(300):
            pulled += 1
            yield rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)

    clf = Classifier(clsx.open(tiny), batch_size=8, workers=2)
    lead, seen = 0, 0
    for pred in clf.predict_iter(images(), topk=1):
        seen += 1
        lead = max(lead, pulled - seen)
        assert pred.ok
    assert seen == 300
    assert lead <= 2 * 8 + 2 + 8  # window + the batch being handed out
