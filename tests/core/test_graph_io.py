"""Reading what any ONNX graph says (clsx.core.graph_io): general rules, not the four test graphs.

The graphs here are made with onnx.helper (a GlobalAveragePool + Flatten head on whatever input), so
each case costs milliseconds; the real foreign graphs are in tests/tools/test_foreign_graphs.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_graphs import tiny_graph as _graph  # noqa: E402

from clsx.core.errors import ClsxError  # noqa: E402
from clsx.core.graph_io import graph_document, layout_of, read_graph_io  # noqa: E402
from clsx.core.metadata import MetadataError, PreprocessUnknownError, check_document, is_partial, read_metadata_or_graph, spec_of  # noqa: E402

@pytest.mark.parametrize("shape, layout", [
    ((1, 3, 224, 224), "NCHW"), (("N", 3, 32, 48), "NCHW"), (("N", 224, 224, 3), "NHWC"), ((8, 1, 28, 28), "NCHW"),
    (("b", "h", "w", 3), "NHWC"), (("b", 3, "h", "w"), "NCHW"),
])
def test_layout_from_the_shape(shape, layout):
    assert layout_of(shape, where="g.onnx", name="x") == layout


@pytest.mark.parametrize("shape, why", [
    ((1, 3, 5, 3), "both axis 1 and axis 3 could be the channels"),
    ((1, 4, 32, 32), "neither axis 1 nor axis 3"),
    ((1, "c", 32, "d"), "neither axis 1 nor axis 3"),
    ((1, 3, 32), "4-D image batches"),
])
def test_unknown_layout_is_one_line_naming_the_shape(shape, why):
    with pytest.raises(ClsxError) as exc:
        layout_of(shape, where="g.onnx", name="x")
    msg = str(exc.value)
    assert why in msg and "g.onnx: input 'x' has shape [" in msg and "\n" not in msg


def test_reads_name_dtype_layout_batch_classes_and_external_data(tmp_path):
    io = read_graph_io(_graph(tmp_path / "a.onnx", (4, 64, 64, 3), dtype="uint8", classes=7, external=True))
    assert (io.input_name, io.input_dtype, io.layout, io.batch, io.num_classes) == ("image", "uint8", "NHWC", 4, 7)
    assert io.input_size == (3, 64, 64) and [p.name for p in io.external] == ["a.onnx.bin"]
    assert io.format.dtype == "uint8" and io.output_name == "logits" and io.batch_text() == "fixed 4"
    dyn = read_graph_io(_graph(tmp_path / "b.onnx", ("n", 3, "h", "w"), dtype="float16"))
    assert dyn.batch is None and dyn.input_size is None and dyn.input_dtype == "float16" and dyn.layout == "NCHW"


@pytest.mark.parametrize("kw, expected", [
    ({"dtype": "int64"}, "input 'image' is int64 [1, 3, 8, 8]; clsx feeds images as float32, float16, uint8"),
    ({"extra_input": True}, "one image input; this one has 2 ('image', 'mask')"),
    ({"out_shape": [1, 10, 1, 1]}, "output 'logits' has shape [1, 10, 1, 1]"),
])
def test_graphs_clsx_cannot_feed_are_one_line(tmp_path, kw, expected):
    path = _graph(tmp_path / "g.onnx", (1, 3, 8, 8), **kw)
    with pytest.raises(ClsxError) as exc:
        read_graph_io(path)
    assert expected in str(exc.value) and "\n" not in str(exc.value)


def test_partial_document_passes_the_validator_and_asks_for_preprocessing(tmp_path):
    path = _graph(tmp_path / "g.onnx", ("n", 32, 32, 3), classes=5)
    doc = read_metadata_or_graph(path)
    assert is_partial(doc) and doc["inputs"][0]["layout"] == "NHWC" and doc["model"]["num_classes"] == 5
    assert check_document(doc, where="g") is doc  # what a plan's sidecar built from it holds
    with pytest.raises(PreprocessUnknownError, match="--preset MODEL .*--input-size, --mean, --std, --interpolation, "
                                                     "--crop-pct/--resize-size, --channel-order, --input-range, --labels"):
        spec_of(doc, where="g")
    unknown_classes = graph_document(read_graph_io(_graph(tmp_path / "d.onnx", (1, 3, 8, 8), out_shape=[1, "k"])))
    assert unknown_classes["model"]["num_classes"] is None and check_document(unknown_classes, where="d")
    broken = {**doc, "model": {**doc["model"], "num_classes": "5"}}
    with pytest.raises(MetadataError, match="num_classes"):
        check_document(broken, where="g")
