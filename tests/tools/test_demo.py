"""clsx demo: real ImageNet weights, exported to ONNX, real photos classified on ONNX Runtime."""

import csv
import io

import numpy as np

import clsx
from clsx.tools.demo import run_demo
from clsx.predict.sinks import CsvWriter


def test_demo_onnxruntime_rows_equal_torch_top5(lite0, photos, tmp_path, caplog):
    out = io.StringIO()
    with caplog.at_level("INFO", logger="clsx"):
        assert run_demo(out, topk=5, workdir=tmp_path) == len(photos)
    said = [r.getMessage() for r in caplog.records]
    # its own sample weights map by position by design: no warning; no CLI flag it was never given
    assert [m for r, m in zip(caplog.records, said) if r.levelname == "WARNING"] == []
    assert not any("--no-verify" in m or "skipped" in m for m in said)
    assert any(m.startswith("verify onnx fp32") and "-> PASS" in m for m in said)  # verified like clsx export
    assert said[-1].startswith(f"{len(photos)} images, 0 failed, ") and " img/s [onnxruntime " in said[-1]  # the summary
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
