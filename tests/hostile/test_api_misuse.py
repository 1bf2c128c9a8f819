"""Python API and CLI misuse: clear one-line ClsxErrors, not tracebacks from deep inside (bytes
iterated as ints, ``"5" < 1``), and Triton model names checked against one documented rule."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import clsx
import hostile_graphs as hg
from clsx.cli import app
from clsx.core.errors import ClsxError, SpecError
from clsx.predict.classifier import ImageArgumentError
from clsx.scale.triton_repo import MAX_NAME, TritonRepoError, check_name, default_name

runner = CliRunner()
TAKES = "a path, a PIL image or a uint8 HxW / HxWxC array, or an iterable of them"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return hg.write(tmp_path_factory.mktemp("misuse") / "m.onnx", hg.document(size=32), size=32)


@pytest.fixture
def classifier(model):
    with clsx.Classifier(model) as c:
        yield c


def test_the_valid_calls_work(classifier, photo):
    """The control: each argument below, in a valid form, is accepted."""
    path = photo["coffee"]
    assert len(classifier.predict(path, topk=5)) == 1
    assert len(classifier.predict([path, str(path), Image.open(path), np.zeros((40, 40, 3), np.uint8)], topk=np.int64(2))) == 4
    assert [len(b) for b in classifier.predict_batches(str(path), topk=1)] == [1]  # one path, not its characters
    assert len(classifier.predict(np.zeros((2, 40, 40, 3), np.uint8), topk=1)) == 2


@pytest.mark.parametrize(("images", "message"), [
    (None, f"images must be {TAKES}; got None"),
    (b"\x89PNG\r\n\x1a\n....", f"images is bytes, which clsx does not decode: pass {TAKES} (for encoded bytes: PIL.Image.open(io.BytesIO(data)))"),
    (bytearray(b"abc"), f"images is bytearray, which clsx does not decode: pass {TAKES} (for encoded bytes: PIL.Image.open(io.BytesIO(data)))"),
    (5, f"images must be {TAKES}; got int 5"),
    ({"path": "x.jpg"}, f"images must be {TAKES}; got dict {{'path': 'x.jpg'}}"),
    ([5], f"images[0] is int 5, not an image: pass {TAKES}"),
    (["x.jpg", {"path": "x.jpg"}], f"images[1] is dict {{'path': 'x.jpg'}}, not an image: pass {TAKES}"),
    ([b"raw"], f"images[0] is bytes b'raw', not an image: pass {TAKES}"),
    (np.zeros(5, np.uint8), "an image array must be HxW or HxWxC (NxHxWxC for several); got shape (5,)"),
    ([np.zeros((1, 4, 4, 3), np.uint8)], f"images[0] is an array of shape (1, 4, 4, 3), not an image: pass {TAKES}"),
], ids=["None", "bytes", "bytearray", "int", "dict", "list-of-int", "dict-in-list", "bytes-in-list", "1-d-array", "4-d-array-in-list"])
def test_images_that_are_not_images(classifier, images, message):
    with pytest.raises(ImageArgumentError) as info:
        classifier.predict(images)
    assert str(info.value) == message
    assert isinstance(info.value, ClsxError) and isinstance(info.value, TypeError)
    with pytest.raises(ImageArgumentError):
        list(classifier.predict_iter(images))


@pytest.mark.parametrize(("topk", "message"), [
    ("5", "topk must be an integer; got '5' (a string)"),
    (0, "topk must be at least 1; got 0"),
    (-3, "topk must be at least 1; got -3"),
    (True, "topk must be an integer; got true (a boolean)"),
    (2.5, "topk must be an integer; got 2.5 (a number)"),
    (None, "topk must be an integer; got null"),
], ids=["string", "zero", "negative", "bool", "float", "None"])
def test_bad_topk(classifier, photo, topk, message):
    with pytest.raises(SpecError) as info:
        classifier.predict(photo["coffee"], topk=topk)
    assert str(info.value) == message


def test_bad_batch_size_and_workers(model, classifier, photo):
    with pytest.raises(SpecError, match=r"^batch size must be an integer; got '8' \(a string\)$"):
        clsx.Classifier(model, batch_size="8")
    with pytest.raises(SpecError, match=r"^batch size must be at least 1; got 0$"):
        clsx.Classifier(model, batch_size=0)
    with pytest.raises(SpecError, match=r"^workers must be an integer; got 1.5 \(a number\)$"):
        list(classifier.predict_batches([photo["coffee"]], workers=1.5))


@pytest.mark.parametrize(("name", "shown"), [
    ("m" * 300, "'" + "m" * 57 + "'... (300 characters)"),
    ("model\n", "'model\\n'"),
    ("a/b", "'a/b'"),
    ("../up", "'../up'"),
    (".hidden", "'.hidden'"),
    ("-flag", "'-flag'"),
    ("my model", "'my model'"),
    ("modèle", "'modèle'"),
    ("a:b", "'a:b'"),
    ("", "''"),
], ids=["300-chars", "trailing-newline", "slash", "dotdot", "leading-dot", "leading-dash", "space", "non-ascii", "colon", "empty"])
def test_triton_names_outside_the_rule(model, tmp_path, name, shown):
    repo = tmp_path / "repo"
    res = runner.invoke(app, ["triton-repo", str(model), "-o", str(repo), "--name", name])
    assert res.exit_code == 1, res.output
    lines = res.stderr.splitlines()
    assert lines == [f"clsx: error: model name {shown}: use 1 to {MAX_NAME} letters, digits, '_', '-' and '.' ('-' and '.' not first)"]
    assert "Traceback" not in res.stderr and not repo.exists()
    with pytest.raises(TritonRepoError):
        check_name(name)


def test_triton_names_inside_the_rule(model, tmp_path):
    """The control: the longest allowed name and every allowed character are accepted."""
    for name in ("m" * MAX_NAME, "Model_1.fp16-v2", "_x"):
        assert check_name(name) == name
    with pytest.raises(TritonRepoError, match="^model name 5: "):
        check_name(5)
    assert len(default_name(tmp_path / ("x" * 300 + ".onnx"))) == MAX_NAME  # a long file name still gives a valid default
    res = runner.invoke(app, ["triton-repo", str(model), "-o", str(tmp_path / "repo"), "--name", "Model_1.fp16-v2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "repo" / "Model_1.fp16-v2" / "config.pbtxt").is_file()
