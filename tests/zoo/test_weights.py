"""Safe checkpoint loading and fitting: formats, wrappers, positional remap, refusals."""

import pytest
import torch
from torch import nn

from clsx import zoo
from clsx.core.errors import WeightsError
from clsx.zoo.weights import fit_state_dict, load_checkpoint


def _net(classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.LazyLinear(classes))


@pytest.fixture
def resnet18_sd():
    return zoo.build("resnet18").module.state_dict()


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module_prefix", "nested"])
def test_wrapped_checkpoints_load(tmp_path, resnet18_sd, wrap):
    sd = {k: v.clone() for k, v in resnet18_sd.items()}
    obj = {
        "bare": sd,
        "state_dict": {"state_dict": sd, "epoch": 3, "arch": "resnet18"},
        "model": {"model": sd, "optimizer": {"lr": 0.1}},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "nested": {"checkpoint": 1, "model": {"state_dict": sd}},
    }[wrap]
    torch.save(obj, tmp_path / "ck.pth")
    loaded = zoo.build("resnet18", weights=tmp_path / "ck.pth")
    for k, v in loaded.module.state_dict().items():
        assert torch.equal(v, resnet18_sd[k]), k
    assert loaded.spec.weights.startswith("file:ck.pth sha256:") and "by name" in loaded.spec.weights


def test_safetensors(tmp_path, resnet18_sd):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in resnet18_sd.items()}, tmp_path / "ck.safetensors")
    loaded = zoo.build("resnet18", weights=tmp_path / "ck.safetensors")
    assert torch.equal(loaded.module.state_dict()["fc.weight"], resnet18_sd["fc.weight"])


def test_positional_remap_when_names_differ(caplog):
    src = zoo.build("resnet18").module.state_dict()
    renamed = {f"layer_{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(src.items())}
    target = zoo.build("resnet18").module
    with caplog.at_level("WARNING"):
        how = fit_state_dict(target, renamed)
    assert how == "by position"
    assert "mapped" in caplog.text and "by position" in caplog.text
    assert torch.equal(target.state_dict()["layer4.1.conv2.weight"], src["layer4.1.conv2.weight"])


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    torch.save(zoo.build("resnet18").module.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match="does not fit this model"):
        zoo.build("resnet34", weights=tmp_path / "r18.pth")


def test_wrong_head_size_suggests_num_classes(tmp_path):
    torch.save(zoo.build("resnet18", num_classes=10).module.state_dict(), tmp_path / "r18-10.pth")
    with pytest.raises(WeightsError, match="--num-classes 10"):
        zoo.build("resnet18", weights=tmp_path / "r18-10.pth")
    assert zoo.build("resnet18", weights=tmp_path / "r18-10.pth", num_classes=10).spec.num_classes == 10


class _Evil:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_Evil.marker),))


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="refused"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists(), "loading the checkpoint ran code from it"


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_corrupt_files(tmp_path, resnet18_sd, content):
    path = tmp_path / "bad.pth"
    if content == "truncated":
        torch.save(resnet18_sd, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match="bad.pth"):
        load_checkpoint(path)


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="not a state_dict"):
        load_checkpoint(tmp_path / "list.pth")
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(WeightsError, match="no tensors"):
        load_checkpoint(tmp_path / "meta.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match="safetensors"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_pretrained_offline_fails_clearly(monkeypatch):
    import torch.hub

    def offline(*a, **k):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match="could not download .*--weights FILE"):
        zoo.build("resnet18", pretrained=True)
