import pytest

from clsx.core.errors import SpecError
from clsx.core.spec import ModelSpec, PreprocessOverrides, PreprocessSpec, parse_floats, parse_input_size, resolve_preprocess


def test_parse_input_size_forms():
    assert parse_input_size("224") == (3, 224, 224)
    assert parse_input_size("3x32x32") == (3, 32, 32)
    assert parse_input_size("240x320") == (3, 240, 320)
    assert parse_input_size("1,28,28") == (1, 28, 28)
    with pytest.raises(SpecError):
        parse_input_size("big")


def test_two_parts_are_always_hxw_and_tiny_short_forms_are_refused():
    """``3x32`` was silently a 3x32-pixel input: S and HxW sides below 8 px now ask for CxHxW."""
    assert parse_input_size("8x8") == (3, 8, 8) and parse_input_size("32x48") == (3, 32, 48)
    with pytest.raises(SpecError, match=r"'3x32' is read as HxW \(a side of 3 px\).*write CxHxW, e\.g\. 3x32x32"):
        parse_input_size("3x32")
    with pytest.raises(SpecError, match=r"'1x28' is read as HxW.*e\.g\. 3x28x28"):
        parse_input_size("1x28")
    with pytest.raises(SpecError, match=r"'4' is read as S.*e\.g\. 3x4x4"):
        parse_input_size("4")
    assert parse_input_size("3x4x4") == (3, 4, 4)  # a tiny input, written in full
    with pytest.raises(SpecError, match="out of range"):
        parse_input_size("2x32x32")  # C must be 1 or 3


def test_parse_floats_rejects_garbage():
    assert parse_floats("0.5,0.5,0.5", what="--mean") == (0.5, 0.5, 0.5)
    with pytest.raises(SpecError, match="--mean"):
        parse_floats("a,b", what="--mean")


def test_precedence_cli_over_checkpoint_over_model():
    model = PreprocessSpec(input_size=(3, 224, 224), resize_size=256, interpolation="bilinear")
    ckpt = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic"}
    cli = PreprocessOverrides(interpolation="nearest")
    spec = resolve_preprocess(model, ckpt, cli)
    assert spec.interpolation == "nearest"  # CLI wins
    assert spec.mean == (0.5, 0.5, 0.5)  # checkpoint beats the model default
    assert spec.resize_size == 256  # untouched model default


def test_new_input_size_keeps_crop_pct():
    model = PreprocessSpec(input_size=(3, 224, 224), resize_size=256)
    spec = resolve_preprocess(model, None, PreprocessOverrides(input_size=(3, 32, 32)))
    assert spec.input_size == (3, 32, 32)
    assert spec.resize_size == 36  # floor(32 / 0.875)
    spec = resolve_preprocess(model, PreprocessOverrides(crop_pct=1.0, input_size=(3, 32, 32)))
    assert spec.resize_size == 32


def test_single_value_mean_broadcasts_and_validation():
    spec = resolve_preprocess(PreprocessSpec(), {"mean": [0.5], "std": [0.25]})
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.25, 0.25, 0.25)
    with pytest.raises(SpecError, match="interpolation"):
        resolve_preprocess(PreprocessSpec(), PreprocessOverrides(interpolation="cubic-ish"))
    with pytest.raises(SpecError, match="std"):
        PreprocessSpec(std=(0.0, 1.0, 1.0))


def test_model_spec_json_round_trip():
    spec = ModelSpec(
        name="resnet50", source="torchvision", num_classes=3, labels=("a", "b", "c"),
        preprocess=PreprocessSpec(input_size=(3, 299, 299), resize_size=342, channel_order="BGR", input_range=255.0,
                                  mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0)),
    )
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert again.ref == "tv:resnet50"
