"""clsx demo: real ImageNet weights, exported to ONNX, real photos classified on ONNX Runtime."""

import csv
import io

import numpy as np

import clsx
from clsx.tools.demo import run_demo
from clsx.predict.sinks import CsvWriter


def test_demo_onnxruntime_rows_equal_torch_top5(lite0, photos, tmp_path):
    out = io.StringIO()
    assert run_demo(out, topk=5, workdir=tmp_path) == len(photos)
    assert (tmp_path / "tf_efficientnet_lite0.onnx").exists()  # it really went through an exported graph
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == CsvWriter.header(5)  # the same columns as clsx infer
    by_torch = clsx.Classifier(clsx.open(lite0)).predict(photos, topk=5)
    assert [r[0] for r in rows[1:]] == [p.source for p in by_torch]
    for row, ref in zip(rows[1:], by_torch):
        assert row[-1] == "" and [int(row[1 + 3 * i]) for i in range(5)] == list(ref.indices), row[0]
        np.testing.assert_allclose([float(row[3 + 3 * i]) for i in range(5)], ref.probs, atol=2e-4)
    coffee = next(r for r in rows if r[0].endswith("coffee.png"))
    assert coffee[1:3] == ["967", "espresso"]
