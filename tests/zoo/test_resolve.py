import pytest

from clsx import zoo
from clsx.core.errors import ModelNotFoundError, SpecError
from clsx.zoo.registry import Source, register_source


def test_bare_name_prefers_torchvision():
    r = zoo.resolve("resnet50")
    assert (r.source.name, r.name, r.ref) == ("torchvision", "resnet50", "tv:resnet50")


def test_bare_name_falls_back_to_timm():
    r = zoo.resolve("tf_efficientnet_lite0")
    assert (r.source.name, r.name) == ("timm", "tf_efficientnet_lite0")


def test_prefixes_and_tags():
    assert zoo.resolve("tv:resnet50").source.name == "torchvision"
    assert zoo.resolve("timm:resnet50").source.name == "timm"
    assert zoo.resolve("timm:resnet50.a1_in1k").name == "resnet50.a1_in1k"
    with pytest.raises(ModelNotFoundError, match="timm has no model 'resnet50.nope'"):
        zoo.resolve("timm:resnet50.nope")


@pytest.mark.parametrize(
    "old,port",
    [("se_resnet50", "legacy_seresnet50"), ("inception_v4", "inception_v4"), ("xception", "legacy_xception"),
     ("inceptionresnetv2", "inception_resnet_v2"), ("dpn92", "dpn92"), ("senet154", "legacy_senet154"),
     ("nasnetalarge", "nasnetalarge")],
)
def test_pretrainedmodels_names_resolve_to_timm_ports(old, port):
    r = zoo.resolve(old)
    assert (r.source.name, r.name) == ("timm", port)
    assert "pretrainedmodels" in r.how


def test_unknown_names_suggest_close_matches():
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'resnet05'.*did you mean .*resnet50"):
        zoo.resolve("resnet05")
    with pytest.raises(ModelNotFoundError, match="torchvision has no model 'resnt50'; did you mean tv:resnet50"):
        zoo.resolve("tv:resnt50")
    with pytest.raises(ModelNotFoundError, match="unknown model source"):
        zoo.resolve("hub:res-net-50")


def _suggestions(name: str) -> list[str]:
    with pytest.raises(ModelNotFoundError) as err:
        zoo.resolve(name)
    text = str(err.value)
    assert "; did you mean " in text and text.endswith("?"), text
    return text.split("; did you mean ", 1)[1][:-1].split(", ")


def test_suggestions_are_qualified_names_without_repeats():
    """resnet50 is in three sources: `did you mean resnet50, resnet50, resnet50?` said nothing."""
    bare = _suggestions("resnt50")
    assert len(bare) == len(set(bare)) and bare[:2] == ["tv:resnet50", "timm:resnet50"]
    assert all(s.split(":")[0] in ("tv", "timm", "pm") for s in bare)
    assert all(zoo.resolve(s).name == s.split(":")[1] for s in bare)  # each one builds what it says
    assert _suggestions("tv:resnt50")[0] == "tv:resnet50" and all(s.startswith("tv:") for s in _suggestions("tv:resnt50"))
    alias = _suggestions("se_resnt50")  # a pretrainedmodels name resolves bare to timm's port: suggested as typed
    assert alias[0] == "se_resnet50" and len(alias) == len(set(alias))


def test_list_models_carries_qualified_names():
    entries = zoo.list_models("resnet18")
    assert [e.name for e in entries] == ["resnet18"] * len(entries)
    assert [e.qualified for e in entries][:2] == ["tv:resnet18", "timm:resnet18"]
    assert len({e.qualified for e in entries}) == len(entries)
    d = entries[0].to_dict()
    assert d == {"name": "resnet18", "source": "torchvision", "input_size": [3, 224, 224], "params": 11689512,
                 "qualified": "tv:resnet18"}
    assert [e.qualified for e in zoo.list_models("tv:resnet1*")] == ["tv:resnet18", "tv:resnet101", "tv:resnet152"]


def test_custom_reference():
    r = zoo.resolve("mypkg.nets:build")
    assert r.source.name == "custom" and r.name == "mypkg.nets:build"


def test_list_models_wildcards_and_sources():
    entries = zoo.list_models("resnet*")
    names = [(e.source, e.name) for e in entries]
    assert ("torchvision", "resnet50") in names and ("timm", "resnet50d") in names
    assert names.index(("torchvision", "resnet18")) < names.index(("torchvision", "resnet101"))  # natural sort
    tv = {e.name: e for e in zoo.list_models("*", source="torchvision")}
    assert tv["resnet50"].params == 25557032 and tv["inception_v3"].input_size == (3, 299, 299)
    timm_only = zoo.list_models("tf_*lite0", source="timm")
    assert [e.name for e in timm_only] == ["tf_efficientnet_lite0"]
    assert timm_only[0].params == 4652008
    with pytest.raises(SpecError, match="unknown source"):
        zoo.list_models("*", source="onnx")


def test_listing_builds_no_model(monkeypatch):
    import timm
    import torchvision.models

    def boom(*a, **k):
        raise AssertionError("listing must not build models")

    monkeypatch.setattr(timm, "create_model", boom)
    monkeypatch.setattr(torchvision.models, "get_model", boom)
    assert len(zoo.list_models("*")) > 1000


def test_duplicate_source_registration_raises():
    class Again(Source):
        name = "timm"
        prefixes = ("timm2",)

    with pytest.raises(ValueError, match="already registered"):
        register_source(Again)
