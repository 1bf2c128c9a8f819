"""The onnxrt runtime on graphs clsx did not make: input formats, fixed batches, dynamic sizes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_graphs import tiny_graph  # noqa: E402

import clsx  # noqa: E402
from clsx.core.metadata import PreprocessUnknownError  # noqa: E402


def test_fixed_batch_is_fed_in_chunks_of_its_size(tmp_path):
    rt = clsx.open(tiny_graph(tmp_path / "f.onnx", (3, 3, 8, 8)))
    x = np.random.default_rng(0).standard_normal((7, 3, 8, 8)).astype(np.float32)
    out = rt.run(x)  # 3 + 3 + 1 (padded to 3, padding dropped)
    assert out.shape == (7, 10)
    np.testing.assert_allclose(out[6:], rt.run(np.concatenate([x[6:]] * 3))[:1], rtol=1e-6)
    assert rt.batch_bounds() == (3, 3)


def test_float16_input_with_dynamic_size_needs_an_input_size(tmp_path, photo):
    path = tiny_graph(tmp_path / "h.onnx", ("n", 3, "h", "w"), dtype="float16")
    with pytest.raises(PreprocessUnknownError, match="pass --preset MODEL"):
        clsx.open(path, preprocess={"mean": [0.5], "std": [0.5]}).spec  # the size is not in the graph
    rt = clsx.open(path, preprocess={"input_size": (3, 40, 30), "mean": [0.5], "std": [0.5]})
    assert rt.input_format.dtype == "float16" and rt.spec.preprocess.input_size == (3, 40, 30)
    pred = clsx.Classifier(rt).predict(photo["coffee"], topk=3)[0]
    assert pred.error is None and len(pred.indices) == 3 and pred.labels == ('', '', '')
    nhwc = clsx.open(tiny_graph(tmp_path / "c.onnx", ("n", 24, 24, 3)), preset="tv:resnet18", labels=None)
    assert nhwc.spec.labels is None  # 10 classes: the preset's 1000 labels are not used
    with pytest.raises(clsx.ClsxError, match="supplies preprocessing to ONNX graphs"):
        clsx.open("tv:resnet18", preset="tv:resnet18")
