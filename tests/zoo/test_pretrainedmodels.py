"""Cadene's pretrainedmodels as the ``pm:`` source: resolution, listing, the original networks,
their input conventions (BGR, 0-255) against pretrainedmodels' own TransformImage, and bad input."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
import urllib.error

import numpy as np
import pretrainedmodels
import pretrainedmodels.utils
import pytest
import torch
from typer.testing import CliRunner

from clsx import zoo
from clsx.cli import app
from clsx.core.errors import MissingDependencyError, ModelNotFoundError, SpecError, WeightsError
from clsx.core.preprocess import preprocess
from clsx.core.spec import ModelSpec, PreprocessOverrides
from clsx.zoo.pretrainedmodels_source import PM_DEFAULTS, settings_of

INSTALL_HINT = "pip install 'clsx[pretrainedmodels]'"


@pytest.fixture(autouse=True)
def _restore_clsx_logging():
    """The CLI attaches a stderr handler; CliRunner closes that stream after the call."""
    logger = logging.getLogger("clsx")
    handlers, level = logger.handlers[:], logger.level
    yield
    logger.handlers[:], logger.level = handlers, level


@pytest.fixture(scope="module")
def bninception():
    torch.manual_seed(0)
    return zoo.build("pm:bninception")


# ------------------------------------------------------------------------------------------------
# preprocessing: clsx's one implementation == pretrainedmodels.utils.TransformImage


@pytest.mark.parametrize("name", ["bninception", "se_resnet50"])
def test_tensor_matches_pretrainedmodels_transform_image(name, photos):
    spec = zoo.get_source("pretrainedmodels").default_spec(name)
    settings = pretrainedmodels.pretrained_settings[name]["imagenet"]
    transform = pretrainedmodels.utils.TransformImage(settings)
    load = pretrainedmodels.utils.LoadImage()
    top = max(settings["input_range"])
    tolerance = top / 255 / min(settings["std"])  # 1/255 of the range, in normalized units
    for path in photos:
        ours = preprocess(path, spec.preprocess)
        theirs = transform(load(path)).numpy()
        assert ours.shape == theirs.shape == (3, 224, 224), path
        err = float(np.abs(ours - theirs).max())
        assert err <= tolerance, f"{path.name}: max |clsx - TransformImage| = {err} > {tolerance}"


def test_settings_map_onto_the_preprocess_spec():
    source = zoo.get_source("pretrainedmodels")
    bgr = source.default_spec("bninception").preprocess
    assert (bgr.channel_order, bgr.input_range, bgr.mean, bgr.std) == ("BGR", 255.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0))
    assert (bgr.resize_size, bgr.interpolation) == (256, "bilinear")  # floor(224 / 0.875), torchvision Resize default
    rgb = source.default_spec("se_resnet50").preprocess
    assert (rgb.channel_order, rgb.input_range) == ("RGB", 1.0)
    assert source.default_spec("xception").preprocess.resize_size == 333  # its own scale 0.8975
    assert source.default_spec("nasnetalarge").preprocess.input_size == (3, 331, 331)
    assert settings_of("dpn92").key == "imagenet+5k"  # no plain "imagenet" entry
    doc = source.default_spec("cafferesnet101").to_dict()  # the metadata document carries both fields
    assert (doc["ref"], doc["preprocess"]["channel_order"], doc["preprocess"]["input_range"]) == ("pm:cafferesnet101", "BGR", 255.0)
    assert ModelSpec.from_dict(doc).preprocess == source.default_spec("cafferesnet101").preprocess


# ------------------------------------------------------------------------------------------------
# resolution and listing


def test_prefix_resolves_to_the_original_and_bare_names_keep_timm_ports():
    for ref in ("pm:se_resnet50", "pretrainedmodels:se_resnet50"):
        r = zoo.resolve(ref)
        assert (r.source.name, r.name, r.ref) == ("pretrainedmodels", "se_resnet50", "pm:se_resnet50")
    bare = zoo.resolve("se_resnet50")
    assert (bare.source.name, bare.name) == ("timm", "legacy_seresnet50")
    assert "pm:se_resnet50 gives the original" in bare.how
    assert zoo.resolve("resnet18").source.name == "torchvision"
    only_pm = zoo.resolve("bninception")  # neither torchvision nor timm has it
    assert (only_pm.source.name, only_pm.ref) == ("pretrainedmodels", "pm:bninception")
    with pytest.raises(ModelNotFoundError, match="pretrainedmodels has no model 'bninceptoin'; did you mean pm:bninception"):
        zoo.resolve("pm:bninceptoin")


def test_listing_reads_the_table_and_agrees_with_the_package():
    entries = {e.name: e for e in zoo.list_models("*", source="pm")}
    assert set(entries) == set(pretrainedmodels.model_names)
    assert zoo.list_models("*", source="pretrainedmodels") == list(entries.values())
    for name, entry in entries.items():
        assert entry.source == "pretrainedmodels"
        assert list(entry.input_size) == list(settings_of(name).values["input_size"]), name
        assert entry.params is not None and entry.params > 0, name
    assert entries["nasnetalarge"].input_size == (3, 331, 331)
    tv_resnet18 = zoo.list_models("resnet18", source="tv")[0]
    assert entries["resnet18"].params == tv_resnet18.params  # pm wraps torchvision's resnet18


def test_listing_imports_neither_pretrainedmodels_nor_torch():
    code = (
        "import sys; from clsx import zoo; n = len(zoo.list_models('*', source='pm')); "
        "print(n, [m for m in ('pretrainedmodels', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split(maxsplit=1) == [str(len(pretrainedmodels.model_names)), "[]\n"]


def test_cli_lists_the_source():
    res = CliRunner().invoke(app, ["models", "--source", "pm", "se_resnet5*"])
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.stdout.splitlines()]
    assert rows[0] == ["NAME", "SOURCE", "INPUT", "PARAMS"]
    assert rows[1] == ["pm:se_resnet50", "pretrainedmodels", "3x224x224", "28.1M"]
    res = CliRunner().invoke(app, ["models", "--json", "--source", "pretrainedmodels", "bn*"])
    assert [d["name"] for d in json.loads(res.stdout)] == ["bninception"]


# ------------------------------------------------------------------------------------------------
# building the original networks


def test_build_gives_pretrainedmodels_own_network(bninception):
    assert bninception.spec.ref == "pm:bninception" and bninception.spec.weights == "random"
    assert bninception.spec.preprocess.channel_order == "BGR" and len(bninception.spec.labels) == 1000
    torch.manual_seed(0)
    theirs = pretrainedmodels.bninception(num_classes=1000, pretrained=None).eval()
    ours = bninception.module.state_dict()
    assert list(ours) == list(theirs.state_dict())
    assert all(torch.equal(ours[k], v) for k, v in theirs.state_dict().items())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(bninception.module(x), theirs(x), rtol=0, atol=0)
    assert zoo.list_models("bninception", source="pm")[0].params == sum(p.numel() for p in theirs.parameters())


def test_squeezenet_logits_are_flattened_and_keys_unchanged():
    m = zoo.build("pm:squeezenet1_1", num_classes=7)
    with torch.no_grad():
        out = m.module(torch.zeros(2, 3, 224, 224))
    assert tuple(out.shape) == (2, 7)
    assert "last_conv.weight" in m.module.state_dict()  # pretrainedmodels' own key layout


def test_wrong_input_size_for_a_fixed_size_net_is_one_line(bninception, photo):
    with pytest.raises(SpecError) as err:
        zoo.build("pm:bninception", preprocess=PreprocessOverrides(input_size=(3, 256, 256)))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("pm:bninception does not run at input size 3x256x256") and "built for 3x224x224" in msg
    res = CliRunner().invoke(app, ["infer", "pm:bninception", str(photo["chelsea"]), "--input-size", "256"])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1].startswith("clsx: error: pm:bninception does not run at input size 3x256x256")


# ------------------------------------------------------------------------------------------------
# weights: pretrainedmodels checkpoints and its own download


@pytest.mark.filterwarnings("ignore::UserWarning:torchvision")
def test_weights_saved_from_pretrainedmodels_models(tmp_path):
    torch.manual_seed(1)
    original = pretrainedmodels.squeezenet1_1(num_classes=1000, pretrained=None).eval()
    ckpt = tmp_path / "pm_squeezenet.pth"
    torch.save(original.state_dict(), ckpt)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = original(x).flatten(1)
        loaded = zoo.build("pm:squeezenet1_1", weights=ckpt)
        assert "(by name)" in loaded.spec.weights
        torch.testing.assert_close(loaded.module(x), want, rtol=0, atol=0)
        # the files pretrainedmodels downloads for its torchvision wrappers have torchvision's layout
        # (classifier.1.* where the wrapper says last_conv.*): they load by position
        tv_ckpt = tmp_path / "tv_squeezenet.pth"
        torch.save({k.replace("last_conv.", "classifier.1."): v for k, v in original.state_dict().items()}, tv_ckpt)
        by_position = zoo.build("pm:squeezenet1_1", weights=tv_ckpt)
        assert "(by position)" in by_position.spec.weights
        torch.testing.assert_close(by_position.module(x), want, rtol=0, atol=0)


def test_pretrained_uses_pretrainedmodels_download(monkeypatch, bninception):
    source_weights = {k: v + 0.5 if v.is_floating_point() else v for k, v in bninception.module.state_dict().items()}
    urls = []

    def fake_load_url(url, *args, **kwargs):
        urls.append(url)
        return copy.deepcopy(source_weights)

    monkeypatch.setattr(torch.utils.model_zoo, "load_url", fake_load_url)
    m = zoo.build("pm:bninception", pretrained=True)
    assert urls == [pretrainedmodels.pretrained_settings["bninception"]["imagenet"]["url"]]
    assert m.spec.weights == "pretrained:pm:bninception"
    assert torch.equal(m.module.state_dict()["last_linear.bias"], source_weights["last_linear.bias"])
    tuned = zoo.build("pm:bninception", pretrained=True, num_classes=5)  # fresh head on the pretrained body
    assert tuned.spec.num_classes == 5 and tuned.module.last_linear.out_features == 5
    assert torch.equal(tuned.module.state_dict()["conv1_7x7_s2.weight"], source_weights["conv1_7x7_s2.weight"])


def test_pretrained_offline_is_a_clear_error(monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.utils.model_zoo, "load_url", offline)
    with pytest.raises(WeightsError, match=r"could not get pretrainedmodels' 'imagenet' weights for bninception .*URLError.*--weights FILE") as err:
        zoo.build("pm:bninception", pretrained=True)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# bad input: missing extra, settings without a field


def test_missing_extra_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pretrainedmodels", None)  # import now fails as if not installed
    with pytest.raises(MissingDependencyError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        zoo.resolve("pm:se_resnet50")
    with pytest.raises(MissingDependencyError, match="clsx.pretrainedmodels."):
        zoo.list_models("*", source="pm")
    assert all(e.source != "pretrainedmodels" for e in zoo.list_models("se_*"))  # full listing: left out
    bare = zoo.resolve("se_resnet50")
    assert bare.source.name == "timm" and INSTALL_HINT in bare.how
    with pytest.raises(ModelNotFoundError, match="unknown model 'bninception'"):
        zoo.resolve("bninception")
    res = CliRunner().invoke(app, ["models", "--source", "pm"])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.strip().startswith("clsx: error: pretrainedmodels is not importable") and INSTALL_HINT in res.stderr


def test_settings_without_a_field_use_the_documented_default(monkeypatch, caplog):
    entry = {k: v for k, v in pretrainedmodels.pretrained_settings["bninception"]["imagenet"].items() if k not in ("input_space", "input_range")}
    monkeypatch.setitem(pretrainedmodels.pretrained_settings, "bninception", {"imagenet": entry})
    with caplog.at_level(logging.WARNING, logger="clsx"):
        spec = zoo.get_source("pretrainedmodels").default_spec("bninception")
    assert (spec.preprocess.channel_order, spec.preprocess.input_range) == (PM_DEFAULTS["input_space"], 1.0)
    assert spec.preprocess.mean == (104.0, 117.0, 128.0)  # what the entry does say is kept
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "pm:bninception" in warning and "lacks input_space, input_range" in warning
    assert "input_space=RGB" in warning and "input_range=[0, 1]" in warning
    monkeypatch.setitem(pretrainedmodels.pretrained_settings, "bninception", {})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clsx"):
        bare = zoo.get_source("pretrainedmodels").default_spec("bninception")
    assert bare.preprocess.input_size == (3, 224, 224) and bare.num_classes == 1000
    assert "(absent)" in caplog.text


def test_settings_with_an_unusable_value_are_a_spec_error(monkeypatch):
    entry = dict(pretrainedmodels.pretrained_settings["bninception"]["imagenet"], input_space="YUV")
    monkeypatch.setitem(pretrainedmodels.pretrained_settings, "bninception", {"imagenet": entry})
    with pytest.raises(SpecError, match="pm:bninception: input_space 'YUV' .* is not RGB or BGR"):
        zoo.get_source("pretrainedmodels").default_spec("bninception")
