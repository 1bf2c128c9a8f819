import json

import onnx
import pytest
from onnx import TensorProto, helper

from clsx.core.metadata import (MetadataError, embed_in_onnx, make_document, read_metadata, spec_of, write_sidecar)
from clsx.core.spec import ModelSpec


def _doc():
    spec = ModelSpec(name="resnet18", source="torchvision", num_classes=2, labels=("a", "b"))
    io = dict(inputs=[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}],
              outputs=[{"name": "logits", "shape": ["batch", 2], "dtype": "float32"}])
    return make_document(spec, artifact="onnx", precision="fp32", **io), spec


def _tiny_onnx():
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph)


def test_onnx_round_trip_and_sidecar(tmp_path):
    doc, spec = _doc()
    model = _tiny_onnx()
    embed_in_onnx(model, doc)
    embed_in_onnx(model, doc)  # replacing, not duplicating
    assert [p.key for p in model.metadata_props] == ["clsx"]
    onnx.save(model, tmp_path / "m.onnx")
    assert read_metadata(tmp_path / "m.onnx") == json.loads(json.dumps(doc))
    assert spec_of(read_metadata(tmp_path / "m.onnx")) == spec

    (tmp_path / "m.plan").write_bytes(b"raw engine")
    write_sidecar(tmp_path / "m.plan", doc)
    assert spec_of(read_metadata(tmp_path / "m.plan")) == spec


def test_missing_and_newer_metadata(tmp_path):
    onnx.save(_tiny_onnx(), tmp_path / "bare.onnx")
    with pytest.raises(MetadataError, match="no clsx metadata"):
        read_metadata(tmp_path / "bare.onnx")
    doc, _ = _doc()
    doc["schema_version"] = 99
    (tmp_path / "x.plan").write_bytes(b"")
    (tmp_path / "x.plan.json").write_text(json.dumps(doc))
    with pytest.raises(MetadataError, match="newer than this clsx"):
        read_metadata(tmp_path / "x.plan")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00garbage")
    with pytest.raises(MetadataError, match="not a readable ONNX"):
        read_metadata(tmp_path / "junk.onnx")
