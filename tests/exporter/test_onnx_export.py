"""torch -> ONNX: graph shape, metadata contract, verification, fallback and refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from clsx.core.errors import GateFailedError, OutputExistsError, SpecError
from clsx.exporter import ExportError, export_onnx
from clsx.core.files import describe_exception
from clsx.exporter import onnx_export
from clsx.core.metadata import read_metadata, read_onnx_metadata, sidecar_path
from clsx.core.spec import ModelSpec, PreprocessSpec
from clsx.zoo import LoadedModel


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# the main path: dynamic batch, names, metadata, sidecar


def test_resnet18_graph_has_named_io_and_dynamic_batch(resnet18_exported):
    res = resnet18_exported
    assert res.exporter == "dynamo" and res.path == res.fp32_path and res.fp16_path is None
    model = onnx.load(str(res.path))
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert _dims(model.graph.input[0]) == ["batch", 3, 64, 64]
    assert _dims(model.graph.output[0]) == ["batch", 10]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sorted(p.name for p in res.path.parent.iterdir()) == ["r18.onnx", "r18.onnx.json"]  # no .onnx.data
    sess = _session(res.path)
    for n in (1, 3, 5):
        assert sess.run(None, {"input": np.zeros((n, 3, 64, 64), np.float32)})[0].shape == (n, 10)


def test_resnet18_metadata_contract(resnet18_exported, resnet18_small):
    res = resnet18_exported
    doc = read_onnx_metadata(res.path)
    assert doc == res.metadata == json.loads(sidecar_path(res.path).read_text())
    assert doc["artifact"] == "onnx" and doc["precision"] == "fp32" and doc["parent_sha256"] is None
    assert doc["inputs"] == [{"name": "input", "shape": ["batch", 3, 64, 64], "dtype": "float32"}]
    assert doc["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    assert ModelSpec.from_dict(doc["model"]) == resnet18_small.spec
    prod = doc["producer"]
    assert prod["exporter"] == "dynamo" and prod["opset"] == onnx_export.DEFAULT_OPSET
    assert prod["torch"] == torch.__version__ and prod["onnx"] == onnx.__version__
    assert prod["batch"] == {"dynamic": True, "size": None, "max": None}
    model = onnx.load(str(res.path))
    assert next(o.version for o in model.opset_import if o.domain == "") == onnx_export.DEFAULT_OPSET
    assert res.sha256 == hashlib.sha256(res.path.read_bytes()).hexdigest()


def test_resnet18_verification_figures(resnet18_exported):
    v = resnet18_exported.verification
    assert v["passed"] and v["reference"] == "torch" and "onnxruntime" in v["candidate"]
    assert v["photos"] == 3 and v["random"] == 1  # photos as one batch of 3, random as a batch of 1
    assert 0 <= v["max_abs_diff"] <= v["rel_tolerance"] * max(v["photos_logit_scale"], v["random_logit_scale"])
    assert v["rel_tolerance"] == 1e-3 and v["agreement_gated"] is False  # random weights: logits only
    assert v["top1"] is not None and v["top5"] is not None


def test_onnx_matches_torch_on_a_fresh_batch(resnet18_exported, resnet18_small):
    x = np.random.default_rng(1).standard_normal((4, 3, 64, 64), dtype=np.float32)
    got = _session(resnet18_exported.path).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = resnet18_small.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_real_weights_gate_on_agreement(lite0_exported, lite0):
    v = lite0_exported.fp32_verification
    assert v["passed"] and v["agreement_gated"] is True
    assert v["photos"] >= 15 and v["top1"] == 1.0 and v["top5"] == 1.0
    assert v["max_abs_diff"] < 1e-3 * v["photos_logit_scale"]
    assert lite0_exported.exporter == "dynamo"
    doc = read_metadata(lite0_exported.fp32_path)
    assert doc["model"]["weights"].startswith("file:") and doc["verification"] == v
    assert doc["model"]["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    assert len(doc["model"]["labels"]) == 1000


def test_default_output_name_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, fp16 = onnx_export.plan_outputs("usernets.cifar:build", None, fp16=True, force=False)
    assert path == Path("usernets.cifar_build.onnx") and fp16 == Path("usernets.cifar_build.fp16.onnx")  # relative, as printed
    folder = tmp_path / "out"
    folder.mkdir()
    assert onnx_export.plan_outputs("timm:vit/x", folder, fp16=False, force=False)[0] == folder / "timm_vit_x.onnx"


def test_static_batch(tmp_path, tiny):
    res = export_onnx(tiny, tmp_path / "b3.onnx", batch=3, verify_photos=4)
    model = onnx.load(str(res.path))
    assert _dims(model.graph.input[0]) == [3, 3, 24, 24] and _dims(model.graph.output[0]) == [3, 5]
    assert res.metadata["inputs"][0]["shape"] == [3, 3, 24, 24]
    assert res.metadata["producer"]["batch"] == {"dynamic": False, "size": 3, "max": None}
    assert res.verification["passed"] and res.verification["photos"] == 4  # 4 photos in padded batches of 3
    with pytest.raises(Exception):
        _session(res.path).run(None, {"input": np.zeros((1, 3, 24, 24), np.float32)})


def test_max_batch_is_recorded(tmp_path, tiny):
    res = export_onnx(tiny, tmp_path / "m.onnx", max_batch=8, verify=False)
    assert res.metadata["producer"]["batch"] == {"dynamic": True, "size": None, "max": 8}
    assert res.verification is None and res.metadata["verification"] is None


def test_old_opset_uses_torchscript_exporter(tmp_path, tiny):
    res = export_onnx(tiny, tmp_path / "op17.onnx", opset=17, verify_photos=3)
    assert res.exporter == "torchscript" and res.metadata["producer"]["opset"] == 17
    assert "dynamo" in res.metadata["producer"]["fallback_reason"]
    model = onnx.load(str(res.path))
    assert next(o.version for o in model.opset_import if o.domain == "") == 17
    assert _dims(model.graph.input[0]) == ["batch", 3, 24, 24]
    assert res.verification["passed"]


def test_dynamo_failure_falls_back_to_torchscript(tmp_path, tiny, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise onnx_export._ExporterFailed("Unsupported: simulated dynamo failure")

    monkeypatch.setattr(onnx_export, "_dynamo", broken)
    res = export_onnx(tiny, tmp_path / "ts.onnx", verify_photos=3)
    assert res.exporter == "torchscript" and res.verification["passed"]
    assert "simulated dynamo failure" in res.metadata["producer"]["fallback_reason"]
    assert any("falling back to the TorchScript exporter" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# verification failure: exit 3, the graph kept under a FAILED name


class TracedBranch(nn.Module):
    """Python control flow on a tensor value: dynamo refuses it, TorchScript bakes in the example's
    branch (all-zero input), so the ONNX graph negates the logits torch computes on real photos."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        y = self.head(x.mean((2, 3)))
        return y if float(x.abs().mean()) > 1e-3 else -y


def test_verification_failure_keeps_failed_file(tmp_path):
    spec = ModelSpec(name="traced_branch", source="custom", num_classes=4,
                     preprocess=PreprocessSpec(input_size=(3, 16, 16), resize_size=18))
    loaded = LoadedModel(module=TracedBranch().eval(), spec=spec)
    with pytest.raises(GateFailedError) as err:
        export_onnx(loaded, tmp_path / "tb.onnx", verify_photos=3)
    assert err.value.exit_code == 3
    assert "tb.FAILED.onnx" in str(err.value) and "max |Δlogit|" in str(err.value)
    assert _leftovers(tmp_path) == ["tb.FAILED.onnx", "tb.FAILED.onnx.json"]
    doc = read_metadata(tmp_path / "tb.FAILED.onnx")
    assert doc["verification"]["passed"] is False and doc["producer"]["exporter"] == "torchscript"


def _corrupt_weights(graph):
    conv = next(t for t in graph.initializer if len(t.dims) == 4)
    w = onnx.numpy_helper.to_array(conv) * np.float32(1.02)
    conv.CopyFrom(onnx.numpy_helper.from_array(w, conv.name))


def _corrupt_op(graph):
    node = next(n for n in graph.node if n.op_type == "Relu")
    node.op_type = "LeakyRelu"
    node.attribute.append(onnx.helper.make_attribute("alpha", 0.05))


@pytest.mark.parametrize("corrupt", [_corrupt_weights, _corrupt_op], ids=["wrong-weights", "wrong-op"])
def test_a_wrong_graph_fails_even_with_the_float64_arbiter(tmp_path, tiny, monkeypatch, corrupt):
    real = onnx_export.finalize_io

    def broken(model, spec, plan):
        real(model, spec, plan)
        corrupt(model.graph)

    monkeypatch.setattr(onnx_export, "finalize_io", broken)
    with pytest.raises(GateFailedError, match="photos: max"):
        export_onnx(tiny, tmp_path / "w.onnx", verify_photos=3)
    v = read_metadata(tmp_path / "w.FAILED.onnx")["verification"]
    assert not v["passed"] and "photos" in v["missed_sets"]
    # float64 was asked, and says torch is exact where the graph is not
    check = v["fp64_check"]["photos"]
    assert check["fp32_noise"] < 1e-3 * v["photos_logit_scale"] < check["candidate_vs_fp64"]
    assert "float64" not in v["criteria"].values()


# ---------------------------------------------------------------------------------------------
# refusals: one clear error, nothing written


def test_existing_output_is_refused_without_force(tmp_path, tiny):
    target = tmp_path / "x.onnx"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--force"):
        export_onnx(tiny, target)
    assert target.read_bytes() == b"precious" and _leftovers(tmp_path) == ["x.onnx"]
    res = export_onnx(tiny, target, force=True, verify=False)
    assert read_onnx_metadata(res.path)["precision"] == "fp32"


def test_existing_fp16_output_is_refused_too(tmp_path, tiny):
    (tmp_path / "x.fp16.onnx").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"x\.fp16\.onnx"):
        export_onnx(tiny, tmp_path / "x.onnx", fp16=True)
    assert _leftovers(tmp_path) == ["x.fp16.onnx"]


@pytest.mark.parametrize("opset", [6, 24, 99])
def test_opset_out_of_range(tmp_path, tiny, opset):
    with pytest.raises(ExportError, match=f"opset {opset} cannot be produced"):
        export_onnx(tiny, tmp_path / "o.onnx", opset=opset)
    assert _leftovers(tmp_path) == []


def test_unwritable_outputs(tmp_path, tiny):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(ExportError, match="is not a folder"):
        export_onnx(tiny, afile / "m.onnx")
    with pytest.raises(ExportError, match="afile is not a folder"):
        export_onnx(tiny, afile / "deeper" / "m.onnx")  # a missing folder that cannot be created
    assert _leftovers(tmp_path) == ["afile"]
    res = export_onnx(tiny, tmp_path / "missing" / "m.onnx", verify=False)  # one that can: created
    assert res.path == tmp_path / "missing" / "m.onnx" and _leftovers(tmp_path / "missing") == ["m.onnx", "m.onnx.json"]


@pytest.mark.parametrize("batch,max_batch", [("0", None), ("many", None), (4, 8), ("dynamic", 1)])
def test_bad_batch_requests(tmp_path, tiny, batch, max_batch):
    with pytest.raises(SpecError):
        export_onnx(tiny, tmp_path / "b.onnx", batch=batch, max_batch=max_batch)
    assert _leftovers(tmp_path) == []


class TwoHeads(nn.Module):
    def forward(self, x):
        return x.mean((2, 3)), x.amax((2, 3))


def test_model_with_two_outputs_is_refused(tmp_path):
    spec = ModelSpec(name="two", source="custom", num_classes=3, preprocess=PreprocessSpec(input_size=(3, 8, 8), resize_size=8))
    with pytest.raises(ExportError, match="returns 2 outputs"):
        export_onnx(LoadedModel(TwoHeads().eval(), spec), tmp_path / "two.onnx")
    assert _leftovers(tmp_path) == []


def test_exporter_failure_reason_names_its_cause():
    try:
        try:
            raise AssertionError("only 4D query, key, and value are supported")
        except AssertionError as cause:
            raise RuntimeError("\x1b[96mThis is step 3/3\x1b[0m of exporting the model to ONNX.\nNext steps: ...") from cause
    except RuntimeError as exc:
        line = describe_exception(exc)
    assert line == ("RuntimeError: This is step 3/3 of exporting the model to ONNX. "
                    "(cause: AssertionError: only 4D query, key, and value are supported)")


def test_batchnorm_folding_is_exact_enough(resnet18_small):
    before = {k: v.clone() for k, v in resnet18_small.module.state_dict().items()}
    folded = onnx_export.fold_batchnorm(resnet18_small.module)
    assert folded is not None and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    after = resnet18_small.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the user's model is untouched
    assert any(isinstance(m, nn.BatchNorm2d) for m in resnet18_small.module.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = resnet18_small.module(x), folded(x)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())
    assert onnx_export.fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1)).eval()) is None  # nothing to fold


class SharedConv(nn.Module):
    """One Conv called twice, only once followed by BatchNorm: folding it would change the other call."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv(x)


def test_shared_conv_is_not_folded():
    net = SharedConv().eval()
    net.bn.running_var.fill_(4.0)
    assert onnx_export.fold_batchnorm(net) is None
