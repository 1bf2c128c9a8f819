"""The fidelity gate: what clsx promises about its artifacts, on real ImageNet weights and real photos.

timm ``tf_efficientnet_lite0`` with the real ImageNet weights; JPEG views of the photos scikit-image
and scikit-learn ship. Every figure comes from :func:`clsx.tools.parity.run_parity` (the code behind
``clsx parity``), so each artifact sees the tensors its own metadata describes.

| comparison (reference -> candidate)          | top-1 agreement | reference top-1 in top-5 |
|----------------------------------------------|-----------------|--------------------------|
| torch -> ONNX FP32                           | 100 %           | 100 %                    |
| ONNX FP32 -> FP16 (FP32 I/O)                 | >= 99 %         | 100 %                    |
| ONNX FP32 -> INT8 Q/DQ, calibrated on views  | >= 95 %         | >= 99 %                  |
|   of photos disjoint from the evaluated ones |                 |                          |

The INT8 graph is clsx's default (TensorRT layout, MinMax, bias correction, every weighted layer in
INT8 but the classifier, no accuracy gate), calibrated on 36 views of 9 photos and judged on 32 views of the other 8.

The FP16 gate runs on 102 views of all 17 photos (a 99 % gate needs at least 100 images to allow
anything but zero flips), the FP32 gate (no flip allowed) on 34 of them. The last test shows the gate can fail: an artifact whose metadata
carries the wrong normalisation is caught.
"""

from dataclasses import replace

import onnx
import pytest

from clsx.zoo import samples
from clsx.core.errors import GateFailedError
from clsx.core.metadata import embed_in_onnx, read_onnx_metadata
from clsx.tools.parity import ParityReport, Thresholds, run_parity

FP32_GATE = Thresholds(min_top1=1.0, min_topk=1.0)
FP16_GATE = Thresholds(min_top1=0.99, min_topk=1.0)
INT8_GATE = Thresholds(min_top1=0.95, min_topk=0.99)


def assert_gate(report: ParityReport, gate: Thresholds) -> None:
    """Every candidate meets ``gate`` on every image (failures and unreadable images count)."""
    assert not report.image_errors, f"unreadable images: {report.image_errors}"
    for c in report.candidates:
        a = c.agreement
        assert a is not None and not c.failed, f"{c.target}: failed on {c.failed}"
        assert a.top1 >= gate.min_top1, f"{c.target}: top-1 agreement {a.top1:.2%} < {gate.min_top1:.0%}; flips {c.flips}"
        assert a.ref_top1_in_topk >= gate.min_topk, f"{c.target}: reference top-1 in top-5 {a.ref_top1_in_topk:.2%}"


@pytest.fixture(scope="module")
def gate_images(tmp_path_factory, photos):
    """102 JPEG views of all 17 sample photos: ``a/`` holds 2 per photo (34), ``b/`` 4 more (68)."""
    folder = tmp_path_factory.mktemp("fidelity-views")
    samples.write_photo_variants(folder / "a", photos, per_photo=2, seed=3)
    samples.write_photo_variants(folder / "b", photos, per_photo=4, seed=4)
    return folder


@pytest.fixture(scope="module")
def disjoint_split(tmp_path_factory, photos):
    """Calibration views of every other photo; evaluation views of the remaining, DISJOINT photos."""
    root = tmp_path_factory.mktemp("fidelity-int8")
    calib, held_out = root / "calib", root / "eval"
    samples.write_photo_variants(calib, photos[0::2], per_photo=4, seed=1)
    samples.write_photo_variants(held_out, photos[1::2], per_photo=4, seed=2)
    return calib, held_out


@pytest.fixture(scope="module")
def lite0_fp16(lite0_onnx, tmp_path_factory):
    from clsx.exporter import convert_fp16

    return convert_fp16(lite0_onnx, tmp_path_factory.mktemp("fidelity-fp16") / "lite0.fp16.onnx", verify=False).path


@pytest.fixture(scope="module")
def lite0_int8(lite0_onnx, disjoint_split, tmp_path_factory):
    from clsx.calib import calibrate

    calib, held_out = disjoint_split
    out = tmp_path_factory.mktemp("fidelity-int8-model") / "lite0.int8.onnx"
    return calibrate(lite0_onnx, calib, out, num=36, batch=12, eval_dir=held_out, eval_num=4).path


@pytest.fixture(scope="module")
def unnormalized(lite0_onnx, tmp_path_factory):
    """The FP32 graph, unchanged, but its metadata forgets the normalisation (mean 0, std 1 instead of 0.5)."""
    model = onnx.load(str(lite0_onnx))
    doc = read_onnx_metadata(lite0_onnx)
    doc["model"]["preprocess"].update(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    embed_in_onnx(model, doc)
    out = tmp_path_factory.mktemp("fidelity-broken") / "lite0.unnormalized.onnx"
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def fp32_reference_report(lite0_onnx, lite0_fp16, unnormalized, gate_images):
    """FP32 ONNX as the reference, run once, against the FP16 graph and the broken artifact."""
    return run_parity(lite0_onnx, [lite0_fp16, unnormalized], gate_images, topk=5, thresholds=FP16_GATE)


def test_onnx_fp32_matches_torch(lite0, lite0_onnx, gate_images):
    """A 100 % gate allows no flip on any number of images: 34 views keep torch's share of the time small."""
    report = run_parity(lite0, [lite0_onnx], gate_images / "a", topk=5, thresholds=FP32_GATE)
    assert report.compared == 34
    assert_gate(report, FP32_GATE)
    assert report.passed


def test_fp16_matches_fp32(fp32_reference_report):
    fp16 = fp32_reference_report.candidates[0]
    assert fp16.target.endswith("lite0.fp16.onnx") and fp16.agreement.images == 102
    assert_gate(replace(fp32_reference_report, candidates=(fp16,)), FP16_GATE)
    assert fp16.passed and fp16.preprocess_differs == ()


def test_int8_calibrated_on_disjoint_photos_matches_fp32(lite0_onnx, lite0_int8, disjoint_split):
    calib, held_out = disjoint_split
    assert not {p.name.rsplit("_", 1)[0] for p in calib.iterdir()} & {p.name.rsplit("_", 1)[0] for p in held_out.iterdir()}
    report = run_parity(lite0_onnx, [lite0_int8], held_out, topk=5, thresholds=INT8_GATE)
    assert report.compared == 32
    assert_gate(report, INT8_GATE)


def test_the_gate_fails_a_wrongly_normalized_artifact(fp32_reference_report):
    """Same graph, wrong mean/std in its metadata: the agreement collapses and the gate says so."""
    broken = fp32_reference_report.candidates[1]
    assert {d.split()[0] for d in broken.preprocess_differs} == {"mean", "std"}
    with pytest.raises(AssertionError, match="top-1 agreement"):
        assert_gate(replace(fp32_reference_report, candidates=(broken,)), FP16_GATE)
    assert not broken.passed and broken.agreement.top1 < 0.9 and broken.agreement.ref_top1_in_topk < 1.0
    assert not fp32_reference_report.passed
    err = fp32_reference_report.gate_error()
    assert isinstance(err, GateFailedError) and err.exit_code == 3 and "unnormalized" in str(err) and "fp16" not in str(err)
