"""Verification verdicts: relative logit tolerance, agreement gated for real weights only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clsx.exporter import artifacts
from clsx.exporter.verify import FP16_VS_FP32, FP32_VS_TORCH, compare, make_probe, run_chunked
from clsx.spec import PreprocessSpec


def _logits(n=6, classes=10, scale=10.0, seed=0):
    return {"photos": np.random.default_rng(seed).standard_normal((n, classes)).astype(np.float32) * scale,
            "random": np.random.default_rng(seed + 1).standard_normal((1, classes)).astype(np.float32) * scale}


def _judge(ref, cand, *, real=False, tol=FP32_VS_TORCH):
    return compare(ref, cand, tolerance=tol, real_weights=real, reference="ref", candidate="cand",
                   photo_names=[f"p{i}.png" for i in range(len(ref.get("photos", [])))])


def test_identical_logits_pass():
    ref = _logits()
    v = _judge(ref, {k: a.copy() for k, a in ref.items()}, real=True)
    assert v.passed and v.max_abs_diff == 0 and v.top1 == 1.0 and v.top5 == 1.0 and v.reasons == []
    assert v.photos == 6 and v.random == 1
    json.dumps(v.to_dict())  # JSON-ready (goes into the metadata)
    assert "PASS" in v.summary() and "top-1 agreement 6/6" in v.summary()


def test_tolerance_is_relative_to_the_logit_scale():
    for scale in (1e-6, 1.0, 1e4):
        ref = _logits(scale=scale)  # each input set is judged against its own largest |logit|
        small = {k: a + np.float32(0.5e-3) * np.abs(a).max() for k, a in ref.items()}
        large = {k: a + np.float32(2e-3) * np.abs(a).max() for k, a in ref.items()}
        assert _judge(ref, small).passed, scale
        v = _judge(ref, large)
        assert not v.passed and "would need rel" in v.reasons[0] and 1.5e-3 < v.needed_rel_tolerance < 2.5e-3


def test_agreement_is_gated_for_real_weights_only():
    ref = _logits()
    cand = {k: a.copy() for k, a in ref.items()}
    row = cand["photos"][2]
    top = int(row.argmax())
    second = int(np.argsort(row)[-2])
    row[top], row[second] = row[second], row[top]  # a top-1 flip on photo 2
    random_weights = _judge(ref, cand, tol=FP16_VS_FP32, real=False)
    real_weights = _judge(ref, cand, tol=FP16_VS_FP32, real=True)
    assert random_weights.top1 == real_weights.top1 == pytest.approx(5 / 6)
    assert random_weights.flips == ["p2.png"]
    # the swap moves logits by their gap; judge agreement alone with a loose logit tolerance
    loose = type(FP16_VS_FP32)(rel=10.0, min_top1=0.99)
    assert _judge(ref, cand, tol=loose, real=False).passed
    v = _judge(ref, cand, tol=loose, real=True)
    assert not v.passed and "top-1 agreement" in v.reasons[0] and "p2.png" in v.reasons[0]


def test_float64_arbitrates_an_ill_conditioned_reference():
    rng = np.random.default_rng(3)
    exact = {"random": rng.standard_normal((2, 10)) * 100}
    torch_noise = rng.standard_normal((2, 10)) * 2  # torch's own FP32 result is ~2 % off the exact one
    ref = {"random": (exact["random"] + torch_noise).astype(np.float32)}
    close = {"random": (exact["random"] - torch_noise).astype(np.float32)}  # as far from exact as torch is
    far = {"random": (exact["random"] + 10 * torch_noise).astype(np.float32)}
    assert not _judge(ref, close).passed  # 4 % apart: outside 1e-3 without the float64 arbiter
    v = compare(ref, close, tolerance=FP32_VS_TORCH, real_weights=False, reference="r", candidate="c", exact=exact)
    assert v.passed and v.missed_sets == [] and "accepted against float64" in v.summary()
    assert v.fp64_check["random"]["candidate_vs_fp64"] <= 2 * v.fp64_check["random"]["reference_vs_fp64"]
    v = compare(ref, far, tolerance=FP32_VS_TORCH, real_weights=False, reference="r", candidate="c", exact=exact)
    assert not v.passed and v.missed_sets == ["random"] and "vs float64" in v.reasons[0]
    chaotic = {"random": (exact["random"] + 30 * torch_noise).astype(np.float32)}  # torch itself is garbage here
    v = compare(chaotic, chaotic, tolerance=FP32_VS_TORCH, real_weights=False, reference="r", candidate="c", exact=exact)
    assert v.passed  # identical to the reference: nothing to arbitrate
    v = compare(chaotic, ref, tolerance=FP32_VS_TORCH, real_weights=False, reference="r", candidate="c", exact=exact)
    assert not v.passed  # torch's own error is above 10 % of the scale: no relief


def test_non_finite_outputs_fail():
    ref = _logits()
    cand = {k: a.copy() for k, a in ref.items()}
    cand["random"][0, 3] = np.nan
    v = _judge(ref, cand)
    assert not v.passed and "non-finite" in v.reasons[0]
    assert "nan" in json.dumps(v.to_dict()) or "inf" in json.dumps(v.to_dict())


def test_shape_mismatch_fails():
    ref = _logits()
    cand = {"photos": ref["photos"][:, :5], "random": ref["random"]}
    assert "output shape" in _judge(ref, cand).reasons[0]


def test_run_chunked_pads_static_batches():
    calls = []

    def fn(x):
        calls.append(len(x))
        return x[:, :1] * 2

    x = np.arange(7, dtype=np.float32).reshape(7, 1)
    out = run_chunked(fn, x, 3, True)
    assert calls == [3, 3, 3] and out[:, 0].tolist() == [0, 2, 4, 6, 8, 10, 12]
    calls.clear()
    assert run_chunked(fn, x, None, False).shape == (7, 1) and calls == [7]
    calls.clear()
    run_chunked(fn, x, 4, False)
    assert calls == [4, 3]


def test_probe_exercises_the_batch_axis(photos):
    pre = PreprocessSpec(input_size=(3, 32, 32), resize_size=36)
    dyn = make_probe(pre, photos=5)
    assert dyn.photos.shape == (5, 3, 32, 32) and dyn.random.shape == (1, 3, 32, 32)  # neither is the example batch 2
    assert dyn.chunk is None and not dyn.pad and dyn.photo_names == tuple(p.name for p in photos[:5])
    static = make_probe(pre, static_batch=4, photos=5)
    assert static.random.shape == (4, 3, 32, 32) and static.chunk == 4 and static.pad
    none = make_probe(pre, photos=0)
    assert none.photos.shape[0] == 0 and none.random.shape[0] == 3 and list(none.sets()) == ["random"]


@pytest.mark.parametrize("name,stem", [("resnet50", "resnet50"), ("usernets.cifar:build", "usernets.cifar_build"),
                                       ("timm:vit/small", "timm_vit_small"), ("  ", "model")])
def test_safe_output_names(name, stem):
    assert artifacts.safe_stem(name) == stem


def test_derived_names(tmp_path):
    p = tmp_path / "m.onnx"
    assert artifacts.fp16_path_for(p).name == "m.fp16.onnx"
    assert artifacts.failed_path_for(p).name == "m.FAILED.onnx"
    assert artifacts.failed_path_for(artifacts.fp16_path_for(p)).name == "m.fp16.FAILED.onnx"
    assert artifacts.resolve_output(tmp_path, "resnet50") == tmp_path / "resnet50.onnx"
    assert artifacts.resolve_output(tmp_path / "x.onnx", "resnet50") == tmp_path / "x.onnx"
    with pytest.raises(artifacts.ExportError, match="must be a .onnx file or an existing folder"):
        artifacts.resolve_output(tmp_path / "newdir", "resnet50")


def test_metadata_is_appended_without_reserializing(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    model.metadata_props.add(key="other", value="kept")
    data, sha = artifacts.write_onnx(tmp_path / "g.onnx", model.SerializeToString(), {"hello": [1, 2]})
    back = onnx.load(str(tmp_path / "g.onnx"))
    assert {p.key: p.value for p in back.metadata_props} == {"other": "kept", "clsx": json.dumps({"hello": [1, 2]})}
    assert json.loads((tmp_path / "g.onnx.json").read_text()) == {"hello": [1, 2]}
    assert (tmp_path / "g.onnx").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
