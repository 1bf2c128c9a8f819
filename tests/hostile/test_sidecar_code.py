"""A file beside a checkpoint never runs code: ``ck.pth.json`` may name a zoo model, not a module:function.

``helper.py`` in the working directory (which custom models are imported from) writes a marker file
when it is imported; the sidecar names it. The marker must never appear, and the refusal is one line
naming the sidecar. The same ``helper:build`` typed on the command line (or passed as ``model=``)
still runs: the permission comes from where the name came from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from escape_graphs import error_line, run_clsx, write_image

import clsx
from clsx import zoo
from clsx.core.errors import ModelNotFoundError
from clsx.zoo import FileModelName

HELPER = '''
import pathlib
pathlib.Path(__file__).with_name("MARKER-imported").write_text("helper.py ran")

import torch
from torch import nn


def build(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, num_classes))
'''


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A folder with helper.py, a real checkpoint of its model, and an image; the current directory
    (custom models import from there) and on sys.path, as a user's project would be."""
    import torch
    from torch import nn

    (tmp_path / "helper.py").write_text(HELPER)
    torch.manual_seed(0)
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    torch.save(net.state_dict(), tmp_path / "ck.pth")
    write_image(tmp_path / "img.jpg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("helper", None)


def _sidecar(folder: Path, settings: dict) -> Path:
    side = folder / "ck.pth.json"
    side.write_text(json.dumps(settings))
    return side


def refusal(side: Path, ref: str) -> str:
    return (f"checkpoint sidecar {side}: its model {ref!r} names code (a module:function); a sidecar may name a zoo "
            f"model (tv:NAME, timm:NAME, pm:NAME or a bare name), never code to import. To run your own model, name it "
            f"yourself: clsx infer {ref} --weights CHECKPOINT (or clsx.open(CHECKPOINT, model={ref!r}))")


@pytest.mark.parametrize("model", ["helper:build", {"ref": "helper:build", "source": "custom"}, {"name": "helper:build"}])
def test_infer_never_imports_what_a_sidecar_names(folder, model):
    _sidecar(folder, {"model": model, "num_classes": 10})
    res = run_clsx("infer", "ck.pth", "img.jpg", cwd=folder)
    assert error_line(res) == "clsx: error: " + refusal(Path("ck.pth.json"), "helper:build")  # named as the user named ck.pth
    assert not (folder / "MARKER-imported").exists()


def test_a_sidecar_cannot_abort_the_process(folder):
    """``os:abort`` would kill clsx with SIGABRT (exit -6) the moment the name was imported and called."""
    _sidecar(folder, {"model": "os:abort"})
    res = run_clsx("infer", str(folder / "ck.pth"), "img.jpg", cwd=folder)
    assert res.returncode == 1  # a refusal, not SIGABRT
    assert error_line(res) == "clsx: error: " + refusal(folder / "ck.pth.json", "os:abort")


def test_api_refuses_too_and_nothing_is_imported(folder):
    side = _sidecar(folder, {"model": "helper:build"})
    rt = clsx.open(folder / "ck.pth")
    with pytest.raises(ModelNotFoundError) as err:
        rt.spec
    assert str(err.value) == refusal(side, "helper:build")
    assert "helper" not in sys.modules and not (folder / "MARKER-imported").exists()


def test_the_user_may_still_name_their_code(folder):
    """The same name from the command line or as model=: it is the user's choice, so it runs."""
    _sidecar(folder, {"model": "helper:build", "num_classes": 10, "preprocess": {"input_size": [3, 16, 16]}})
    res = run_clsx("infer", "helper:build", "img.jpg", "--weights", "ck.pth", "--topk", "1", cwd=folder)
    assert res.returncode == 0, res.stderr
    assert (folder / "MARKER-imported").read_text() == "helper.py ran"
    (folder / "MARKER-imported").unlink()
    rt = clsx.open(folder / "ck.pth", model="helper:build")
    assert rt.spec.num_classes == 10 and rt.spec.preprocess.input_size == (3, 16, 16)  # the sidecar's settings apply
    assert (folder / "MARKER-imported").exists()


def test_a_sidecar_may_name_a_zoo_model(tmp_path):
    import torch

    net = zoo.build("timm:test_resnet", num_classes=10)
    ck = tmp_path / "ck.pth"
    torch.save(net.module.state_dict(), ck)
    _sidecar(tmp_path, {"model": "timm:test_resnet", "num_classes": 10})
    rt = clsx.open(ck)
    assert rt.spec.ref == "timm:test_resnet" and rt.spec.num_classes == 10
    assert rt.spec.weights.startswith("file:ck.pth")


def test_names_from_files_cannot_become_code():
    """The zoo's permission, directly: a FileModelName never resolves to the custom source, whatever
    allow_code says, and turning it into a str does not launder it."""
    name = FileModelName("helper:build", Path("/x/ck.pth.json"))
    for allow in (True, False):
        with pytest.raises(ModelNotFoundError, match="names code"):
            zoo.resolve(name, allow_code=allow)
    with pytest.raises(ModelNotFoundError, match="unknown model source|unknown model"):
        zoo.resolve(str(name))  # "helper:build (from checkpoint sidecar /x/ck.pth.json)" names nothing
    with pytest.raises(ModelNotFoundError, match="accepted only from the command line or an API argument"):
        zoo.resolve("helper:build", allow_code=False)
    assert zoo.resolve(FileModelName("resnet18", Path("/x/ck.pth.json"))).ref == "tv:resnet18"


def test_a_checkpoint_sidecar_that_links_out_of_the_folder(folder, tmp_path_factory):
    """The sidecar itself may not be a link elsewhere (its settings would come from a file the
    checkpoint's folder does not hold)."""
    outside = tmp_path_factory.mktemp("outside-sidecar") / "settings.json"
    outside.write_text(json.dumps({"model": "resnet18"}))
    (folder / "ck.pth.json").symlink_to(outside)
    res = run_clsx("infer", "ck.pth", "img.jpg", cwd=folder)
    assert error_line(res) == ("clsx: error: ck.pth: sidecar 'ck.pth.json' is outside the artifact's folder .; refused "
                               "(an artifact may name only files inside its own folder)")
