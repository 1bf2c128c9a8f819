"""Hostile metadata documents (inside real ONNX graphs, in sidecars, in a Triton repository's
clsx.json): each is one MetadataError line naming the file and the field, through the API and the
CLI (exit 1, stderr one ``clsx: error:`` line, no traceback) -- never a traceback, a RecursionError
or an allocation sized by the document."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import clsx
import hostile_graphs as hg
from clsx.cli import app
from clsx.core.errors import ClsxError, SpecError
from clsx.core.metadata import InputSizeMismatchError, MetadataError, read_metadata
from clsx.core.spec import MAX_INPUT_SIDE, ModelSpec, PreprocessOverrides, PreprocessSpec, parse_input_size

runner = CliRunner()
DEEP = 100_000


class Decoded(BaseException):
    """Raised by a patched preprocess(): an image was decoded (BaseException, so the pipeline's
    per-image error handling does not turn it into a row)."""


def _no_decoding(monkeypatch):
    import clsx.predict.classifier as classifier

    def decoded(*args, **kwargs):
        raise Decoded()

    monkeypatch.setattr(classifier, "preprocess", decoded)


def _set(*path, value):
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _size(h, w, *, shape=False):
    def mutate(doc):
        doc["model"]["preprocess"]["input_size"] = [3, h, w]
        if shape:
            doc["inputs"][0]["shape"] = ["batch", 3, h, w]
    return mutate


#: (id, mutation of a valid document, the message after "<file>: ")
CASES = [
    ("schema-string", _set("schema_version", value="1"), "schema_version must be a positive integer; got '1' (a string)"),
    ("schema-float", _set("schema_version", value=1.5), "schema_version must be a positive integer; got 1.5 (a number)"),
    ("schema-bool", _set("schema_version", value=True), "schema_version must be a positive integer; got true (a boolean)"),
    ("schema-newer", _set("schema_version", value=99), "metadata schema 99 is newer than this clsx understands (1); upgrade clsx"),
    ("model-string", _set("model", value="x"), "model must be an object; got 'x' (a string)"),
    ("preprocess-string", _set("model", "preprocess", value="x"), "model.preprocess must be an object; got 'x' (a string)"),
    ("producer-string", _set("producer", value="x"), "producer must be an object or null; got 'x' (a string)"),
    ("std-nan", _set("model", "preprocess", "std", value=[float("nan"), 0.2, 0.2]),
     "model.preprocess.std must be positive, finite numbers; got [nan, 0.2, 0.2] (a list)"),
    ("std-zero", _set("model", "preprocess", "std", value=[0, 0.2, 0.2]),
     "model.preprocess.std must be positive, finite numbers; got [0, 0.2, 0.2] (a list)"),
    ("mean-2-of-3", _set("model", "preprocess", "mean", value=[0.5, 0.5]),
     "model.preprocess.mean needs 3 values (one per channel of the input); got 2"),
    ("labels-length", _set("model", "labels", value=["a", "b"]), "model.labels has 2 names but num_classes is 10"),
    ("labels-ints", _set("model", "labels", value=list(range(10))), "model.labels must all be strings; labels[0] is 0 (an integer)"),
    ("labels-string", _set("model", "labels", value="abc"), "model.labels must be a list of strings or null; got 'abc' (a string)"),
    ("classes-string", _set("model", "num_classes", value="10"), "model.num_classes must be an integer from 1 to 1000000; got '10' (a string)"),
    ("classes-huge", lambda d: d["model"].update(num_classes=10**12, labels=None),
     "model.num_classes must be an integer from 1 to 1000000; got 1000000000000 (an integer)"),
    ("size-12000", _size(12000, 12000, shape=True),
     f"model.preprocess.input_size must be 1xHxW or 3xHxW with H and W from 1 to {MAX_INPUT_SIDE}; got 3x12000x12000"),
    ("size-negative", _size(-224, 224),
     f"model.preprocess.input_size must be 1xHxW or 3xHxW with H and W from 1 to {MAX_INPUT_SIDE}; got 3x-224x224"),
    ("size-vs-inputs", _size(256, 256), "model.preprocess.input_size is 3x256x256 but inputs[0].shape is ['batch', 3, 224, 224]"),
    ("nan-elsewhere", _set("verification", value={"max_abs_diff": float("inf")}),
     "verification.max_abs_diff is inf: numbers must be finite (NaN and Infinity are not JSON)"),
    # beyond the list
    ("resize-huge", _set("model", "preprocess", "resize_size", value=10**9),
     "model.preprocess.resize_size must be an integer from 1 to 8192; got 1000000000 (an integer)"),
    ("input-range-bool", _set("model", "preprocess", "input_range", value=True), "model.preprocess.input_range must be 1 or 255; got true (a boolean)"),
    ("batch-max-string", _set("producer", "batch", "max", value="32"), "producer.batch.max must be a positive integer or null; got '32' (a string)"),
    ("inputs-object", _set("inputs", value={"name": "input"}), "inputs must be a list; got {'name': 'input'} (an object)"),
    ("name-missing", lambda d: d["model"].pop("name"), "model.name is missing"),
]
IDS = [c[0] for c in CASES]


def _doc(mutate):
    doc = hg.document()
    mutate(doc)
    return doc


def _one_line_error(args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 1, (res.exit_code, res.output, res.exception)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clsx: error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0].removeprefix("clsx: error: ")


def test_a_valid_document_reads_and_runs(tmp_path, photo):
    """The control: the same graph and document unmodified are accepted (so every case below fails
    because of its one change)."""
    path = hg.write(tmp_path / "good.onnx", hg.document())
    assert read_metadata(path)["model"]["num_classes"] == hg.CLASSES
    res = runner.invoke(app, ["infer", str(path), str(photo["coffee"]), "-k", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1].split(",")[2].startswith("c")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hostile_document_in_onnx_metadata(tmp_path, case):
    _, mutate, message = case
    path = hg.write(tmp_path / "m.onnx", _doc(mutate))
    with pytest.raises(MetadataError) as info:
        read_metadata(path)
    assert str(info.value) == f"{path}: {message}"
    with pytest.raises(MetadataError, match="^" + str(path)):
        clsx.open(path).spec
    assert _one_line_error(["info", path]) == f"{path}: {message}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hostile_document_in_a_sidecar(tmp_path, case):
    _, mutate, message = case
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not read")
    side = tmp_path / "m.plan.json"
    side.write_text(json.dumps(_doc(mutate)))
    with pytest.raises(MetadataError) as info:
        read_metadata(plan)
    assert str(info.value) == f"{side}: {message}"
    assert _one_line_error(["info", plan]) == f"{side}: {message}"


def test_nesting_100000_deep_is_one_line(tmp_path):
    deep = "[" * DEEP + "]" * DEEP
    path = hg.write(tmp_path / "deep.onnx", '{"schema_version": 1, "model": ' + deep + "}")
    assert _one_line_error(["info", path]) == f"{path}: JSON nested more than 32 levels deep; refused"
    plan = tmp_path / "deep.plan"
    plan.write_bytes(b"")
    (tmp_path / "deep.plan.json").write_text('{"schema_version": 1, "model": {"name": "x", "labels": ' + deep + "}}")
    assert _one_line_error(["info", plan]) == f"{tmp_path / 'deep.plan.json'}: JSON nested more than 32 levels deep; refused"
    # nesting Python parses (40 levels) but no document has: refused by the validator, with its path
    doc = hg.document()
    doc["producer"]["extra"] = json.loads("[" * 40 + "]" * 40)
    path = hg.write(tmp_path / "deep40.onnx", doc)
    assert _one_line_error(["info", path]) == f"{path}: producer.extra[0]... is nested more than 32 levels deep; refused"


def test_raw_nan_token_and_non_object_document(tmp_path):
    text = json.dumps(hg.document()).replace('"std": [0.229, 0.224, 0.225]', '"std": [NaN, 0.224, 0.225]')
    assert "NaN" in text
    path = hg.write(tmp_path / "nan.onnx", text)
    assert _one_line_error(["info", path]) == f"{path}: model.preprocess.std must be positive, finite numbers; got [nan, 0.224, 0.225] (a list)"
    path = hg.write(tmp_path / "list.onnx", "[1, 2, 3]")
    assert _one_line_error(["info", path]) == f"{path}: not a clsx metadata document"


def test_metadata_input_size_is_checked_against_the_graph_before_any_image(tmp_path, photo, monkeypatch):
    """A document claiming 4000 px (within the bound, consistent with its own inputs) on a 224 px graph
    fails when the graph is opened: no image is decoded at 4000 px first."""
    doc = _doc(_size(4000, 4000, shape=True))
    doc["model"]["preprocess"]["resize_size"] = 4000
    path = hg.write(tmp_path / "m.onnx", doc)
    expected = f"{path}: metadata says 3x4000x4000 but the graph takes 3x224x224"

    _no_decoding(monkeypatch)
    with pytest.raises(InputSizeMismatchError) as info:
        clsx.Classifier(path).predict([photo["coffee"]])
    assert str(info.value) == expected
    with pytest.raises(InputSizeMismatchError):
        clsx.open(path).activate()
    assert _one_line_error(["infer", path, photo["coffee"]]) == expected
    assert _one_line_error(["triton-repo", path, "-o", tmp_path / "repo"]) == expected
    assert not (tmp_path / "repo").exists()


def test_overrides_and_given_specs_are_checked_against_the_graph(tmp_path, photo, monkeypatch):
    path = hg.write(tmp_path / "m.onnx", hg.document())
    bare = hg.write(tmp_path / "bare.onnx", None)
    _no_decoding(monkeypatch)
    rt = clsx.open(path, preprocess=PreprocessOverrides(input_size=(3, 64, 64)))
    with pytest.raises(InputSizeMismatchError, match=r"the preprocessing overrides give 3x64x64 but the graph takes 3x224x224$"):
        clsx.Classifier(rt).predict(photo["coffee"])
    with pytest.raises(InputSizeMismatchError, match="the given spec says 3x64x64 but the graph takes 3x224x224$"):
        clsx.open(bare, spec=hg.spec(size=64)).activate()
    assert _one_line_error(["infer", path, photo["coffee"], "--input-size", "64"]) == \
        f"{path}: the preprocessing overrides give 3x64x64 but the graph takes 3x224x224"
    # the control: the matching size passes the check (and then reaches the patched preprocessing)
    with pytest.raises(Decoded):
        clsx.Classifier(clsx.open(bare, spec=hg.spec(size=224))).predict(photo["coffee"])


def test_input_size_flags_and_specs_are_bounded(photo, tmp_path):
    path = hg.write(tmp_path / "m.onnx", hg.document())
    assert _one_line_error(["infer", path, photo["coffee"], "--input-size", "10000"]) == (
        "input size '10000' is out of range: it must be 1xHxW or 3xHxW with H and W from 1 to 4096; got 3x10000x10000")
    assert parse_input_size("4096") == (3, 4096, 4096)
    with pytest.raises(SpecError, match="out of range"):
        parse_input_size("3x0x224")
    with pytest.raises(SpecError, match=r"^input_size must be 1xHxW or 3xHxW with H and W from 1 to 4096; got 3x4097x224$"):
        PreprocessSpec(input_size=(3, 4097, 224))
    with pytest.raises(SpecError, match=r"^std must be positive, finite numbers; got \[inf, 1.0, 1.0\] \(a list\)$"):
        PreprocessSpec(std=(float("inf"), 1.0, 1.0))
    with pytest.raises(SpecError, match=r"^labels has 1 names but num_classes is 2$"):
        ModelSpec(name="m", source="custom", num_classes=2, labels=("a",))
    with pytest.raises(SpecError, match=r"^model.preprocess.input_size must be 3 integers \(C, H, W\); got '224' \(a string\)$"):
        ModelSpec.from_dict({"name": "m", "source": "custom", "num_classes": 2, "preprocess": {"input_size": "224"}})
    with pytest.raises(SpecError, match=r"^model spec: invalid JSON"):
        ModelSpec.from_json("[" * DEEP)


def test_triton_clsx_json_is_validated_when_read(tmp_path):
    path = hg.write(tmp_path / "m.onnx", hg.document())
    res = runner.invoke(app, ["triton-repo", str(path), "-o", str(tmp_path / "repo"), "--name", "m"])
    assert res.exit_code == 0, res.output
    served = tmp_path / "repo" / "m" / "clsx.json"
    assert read_metadata(served)["model"]["name"] == "hostile"  # the control: what triton-repo wrote reads back
    doc = json.loads(served.read_text())
    doc["model"]["preprocess"]["std"] = [0.0, 1.0, 1.0]
    served.write_text(json.dumps(doc))
    assert _one_line_error(["info", served]) == f"{served}: model.preprocess.std must be positive, finite numbers; got [0.0, 1.0, 1.0] (a list)"
    served.write_text('{"schema_version": 1, "model": "x"}')
    with pytest.raises(ClsxError, match=r"clsx.json: model must be an object; got 'x' \(a string\)$"):
        read_metadata(served)


def test_hostile_documents_are_refused_by_calib_before_calibrating(tmp_path, photo):
    path = hg.write(tmp_path / "m.onnx", _doc(_set("model", "preprocess", "std", value=[float("nan"), 1, 1])))
    images = tmp_path / "images"
    images.mkdir()
    for p in list(photo.values())[:2]:
        shutil.copy(p, images / p.name)
    assert _one_line_error(["calib", path, images, "-o", tmp_path / "m.int8.onnx"]) == \
        f"{path}: model.preprocess.std must be positive, finite numbers; got [nan, 1, 1] (a list)"
    good = hg.write(tmp_path / "good.onnx", hg.document())
    assert _one_line_error(["calib", good, images, "-o", tmp_path / "g.int8.onnx", "--input-size", "64"]) == \
        f"{good}: the preprocessing flags give 3x64x64 but the graph takes 3x224x224"
