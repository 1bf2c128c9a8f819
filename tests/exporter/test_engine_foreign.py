"""``clsx build`` on graphs clsx did not make: any valid ONNX builds (TensorRT-RTX's builder, CPU only).

The four real foreign graphs are built in tests/tools/test_foreign_graphs.py; here tiny onnx.helper
graphs cover the general rules: the profile from the graph's dynamic axes, a fixed batch giving a
fixed profile, dynamic height/width fixed by --input-size in the graph's own layout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorrt_rtx", reason="needs tensorrt_rtx (pip install 'clsx[tensorrt-rtx]')")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_graphs import tiny_graph  # noqa: E402

from clsx.core.errors import ClsxError  # noqa: E402
from clsx.core.metadata import read_metadata  # noqa: E402
from clsx.exporter.engine import build_engine  # noqa: E402


def _profile(res) -> list[list[int]]:
    p = res.metadata["tensorrt"]["profile"]
    return [p["min"], p["opt"], p["max"]]


def test_fixed_batch_gives_a_fixed_profile_and_a_sidecar_of_what_is_known(tmp_path):
    res = build_engine(tiny_graph(tmp_path / "f.onnx", (3, 16, 16, 3), dtype="uint8"), target="rtx")
    assert _profile(res) == [[3, 16, 16, 3]] * 3
    doc = read_metadata(res.path)
    assert doc["model"]["preprocess"] is None and doc["model"]["num_classes"] == 10
    assert doc["inputs"] == [{"name": "image", "shape": [3, 16, 16, 3], "dtype": "uint8", "layout": "NHWC"}]


def test_dynamic_batch_takes_the_profile_flags(tmp_path):
    path = tiny_graph(tmp_path / "d.onnx", ("n", 3, 16, 16))
    assert _profile(build_engine(path, tmp_path / "a.plan", target="rtx"))[2] == [32, 3, 16, 16]
    assert [p[0] for p in _profile(build_engine(path, tmp_path / "b.plan", target="rtx", min_batch=2, max_batch=4))] == [2, 4, 4]


def test_dynamic_height_and_width_need_an_input_size(tmp_path):
    path = tiny_graph(tmp_path / "hw.onnx", ("n", "h", "w", 3))
    with pytest.raises(ClsxError, match="only the batch axis may be dynamic.*pass --input-size"):
        build_engine(path, target="rtx")
    res = build_engine(path, target="rtx", input_size=(3, 24, 40))
    assert _profile(res)[0] == [1, 24, 40, 3]  # in the graph's own layout (NHWC)
    assert read_metadata(res.path)["inputs"][0]["shape"] == ["n", 24, 40, 3]
    with pytest.raises(ClsxError, match="does not fit input 'image'"):
        build_engine(tiny_graph(tmp_path / "c.onnx", ("n", 3, "h", "w")), target="rtx", input_size=(1, 8, 8))
