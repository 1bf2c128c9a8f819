"""Tampered calibration caches: a real cache written by ``clsx calib --cache`` on a tiny graph, then
altered; reusing it is one "tampered or corrupt calibration cache" line naming the file (exit 1,
nothing written) -- not a traceback, and not an INT8 graph built on swapped or NaN ranges."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import hostile_graphs as hg
from clsx.calib import calibrate
from clsx.calib.cache import CalibrationCacheError
from clsx.cli import app

runner = CliRunner()
SIZE = 32
NUM = 6


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, photos):
    """(graph, images, cache): the cache written by the CLI's first calibration of the graph."""
    root = tmp_path_factory.mktemp("hostile-cache")
    images = root / "images"
    images.mkdir()
    for p in photos[:8]:
        shutil.copy(p, images / p.name)
    graph = hg.write(root / "g.onnx", hg.document(size=SIZE), size=SIZE)
    cache = root / "g.calib.json"
    res = runner.invoke(app, ["calib", str(graph), str(images), "-o", str(root / "g.int8.onnx"), "--num", str(NUM),
                              "--batch", "4", "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    doc = json.loads(cache.read_text())
    assert set(doc["ranges"]["data"]) == {"input", "flat"} and len(doc["input_means"]["input"]) == 3
    return graph, images, cache


def _reuse(calibrated, tmp_path, text):
    """Run ``clsx calib --cache`` with a cache holding ``text``; return (its path, the one error line)."""
    graph, images, _ = calibrated
    cache = tmp_path / "tampered.calib.json"
    cache.write_text(text) if isinstance(text, str) else cache.write_bytes(text)
    out = tmp_path / "out.int8.onnx"
    res = runner.invoke(app, ["calib", str(graph), str(images), "-o", str(out), "--num", str(NUM), "--batch", "4",
                              "--cache", str(cache)])
    assert res.exit_code == 1, (res.output, res.exception)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clsx: error: ") and "Traceback" not in res.stderr, res.stderr
    assert not out.exists() and not out.with_name(out.name + ".json").exists()
    return cache, lines[0].removeprefix("clsx: error: ")


def _tampered(calibrated, mutate):
    doc = json.loads(calibrated[2].read_text())
    mutate(doc)
    return json.dumps(doc)


def _swap(doc):
    entry = doc["ranges"]["data"]["input"]
    entry["lowest"], entry["highest"] = entry["highest"], entry["lowest"]


def _rename(doc):
    data = doc["ranges"]["data"]
    data["flat_renamed"] = data.pop("flat")


def _nan(doc):
    doc["ranges"]["data"]["input"]["lowest"]["data"][0] = float("nan")


def _inf(doc):
    doc["ranges"]["data"]["flat"]["highest"]["data"][0] = float("inf")


def _set(*path, value):
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


#: (id, mutation, the problem after "tampered or corrupt calibration cache <file>: ")
CASES = [
    ("nan-range", _nan, "ranges.data.input.lowest.data[0] is nan: numbers must be finite (NaN and Infinity are not JSON)"),
    ("inf-range", _inf, "ranges.data.flat.highest.data[0] is inf: numbers must be finite (NaN and Infinity are not JSON)"),
    ("unknown-tensor", _rename, "ranges.data['flat_renamed'] names a tensor the graph being calibrated does not have; delete it to calibrate again"),
    ("data-a-list", _set("ranges", "data", value=[1, 2]),
     "ranges.data must be a non-empty object of tensor ranges; got [1, 2] (a list); delete it to calibrate again"),
    ("ranges-a-string", _set("ranges", value="x"), "ranges must be an object; got 'x' (a string); delete it to calibrate again"),
    ("entry-a-list", _set("ranges", "data", "input", value=[0, 1]),
     "ranges.data['input'] must be an object with lowest and highest; got [0, 1] (a list); delete it to calibrate again"),
    ("means-a-list", _set("input_means", value=["x"]), "input_means must be an object; got ['x'] (a list); delete it to calibrate again"),
    ("means-length", _set("input_means", "input", value=[0.1, 0.2]),
     "input_means['input'] has 2 values but the layer it feeds has 3 input channels; delete it to calibrate again"),
    ("means-nan", _set("input_means", "flat", value=[0.0, float("nan"), 0.0, 0.0]),
     "input_means.flat[1] is nan: numbers must be finite (NaN and Infinity are not JSON)"),
    ("means-unknown-tensor", _set("input_means", "conv_renamed", value=[0.0] * 4),
     "input_means['conv_renamed'] names a tensor the graph being calibrated does not have; delete it to calibrate again"),
    ("means-strings", _set("input_means", "input", value=["0.1", "0.2", "0.3"]),
     "input_means['input'] must be a non-empty list of finite numbers; got ['0.1', '0.2', '0.3'] (a list); delete it to calibrate again"),
    # beyond the list
    ("huge-range", _set("ranges", "data", "input", "highest", "data", value=[1e308]),
     "ranges.data['input'] has a range of 1e+308: beyond 1e+30, its int8 scale would be no use (float32 overflow above "
     "3.4e38); delete it to calibrate again"),
    ("float64-range", _set("ranges", "data", "input", "lowest", "dtype", value="float64"),
     "ranges.data['input'].lowest must be float32 or float16; got dtype 'float64'; delete it to calibrate again"),
    ("range-lengths", _set("ranges", "data", "input", "lowest", "data", value=[-1.0, -2.0]),
     "ranges.data['input'] has lowest of shape (2,) but highest of shape (1,); delete it to calibrate again"),
    ("range-a-string", _set("ranges", "data", "input", "highest", value="2.0"),
     "ranges.data['input'].highest must be numbers; got '2.0' (a string); delete it to calibrate again"),
    ("method-swapped", _set("ranges", "calibration_method", "value", value="CalibrationMethod.Entropy"),
     "ranges.calibration_method must be CalibrationMethod.MinMax (the cache's method); got "
     "{'CLS': 'CalibrationMethod', 'value': 'CalibrationMethod.Entropy'} (an object); delete it to calibrate again"),
    ("key-an-int", _set("parent_sha256", value=5), "parent_sha256 must be a string; got 5 (an integer); delete it to calibrate again"),
    ("format-a-string", _set("clsx_calibration_cache", value="2"),
     "clsx_calibration_cache must be an integer; got '2' (a string); delete it to calibrate again"),
]


def test_the_untampered_cache_is_reused(calibrated, tmp_path):
    """The control: the cache as written is accepted and skips calibration."""
    graph, images, cache = calibrated
    res = calibrate(graph, images, tmp_path / "again.int8.onnx", num=NUM, batch=4, cache=cache)
    assert res.used_cache


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_tampered_cache_is_one_line(calibrated, tmp_path, case):
    _, mutate, problem = case
    cache, line = _reuse(calibrated, tmp_path, _tampered(calibrated, mutate))
    assert line == f"tampered or corrupt calibration cache {cache}: {problem}"


def test_swapped_ranges_are_refused_not_quantized(calibrated, tmp_path):
    doc = json.loads(calibrated[2].read_text())
    low, high = doc["ranges"]["data"]["input"]["lowest"]["data"], doc["ranges"]["data"]["input"]["highest"]["data"]
    cache, line = _reuse(calibrated, tmp_path, _tampered(calibrated, _swap))
    assert line == (f"tampered or corrupt calibration cache {cache}: ranges.data['input'] has lowest {high} above highest {low}; "
                    "delete it to calibrate again")
    graph, images, _ = calibrated
    with pytest.raises(CalibrationCacheError, match=r"^tampered or corrupt calibration cache .*above highest"):
        calibrate(graph, images, tmp_path / "api.int8.onnx", num=NUM, batch=4, cache=cache)
    assert not (tmp_path / "api.int8.onnx").exists()


def test_unparseable_caches_are_one_line(calibrated, tmp_path):
    text = calibrated[2].read_text()
    cache, line = _reuse(calibrated, tmp_path, text[: len(text) // 2])
    assert line.startswith(f"tampered or corrupt calibration cache {cache}: invalid JSON (")
    deep = '{"clsx_calibration_cache": 2, "ranges": ' + "[" * 100_000 + "]" * 100_000 + "}"
    cache, line = _reuse(calibrated, tmp_path, deep)
    assert line == f"tampered or corrupt calibration cache {cache}: JSON nested more than 32 levels deep; refused"
    cache, line = _reuse(calibrated, tmp_path, "[1, 2]")
    assert line == f"calibration cache {cache}: not a clsx calibration cache"
    cache, line = _reuse(calibrated, tmp_path, b"\xff\xfe\x00garbage")
    assert line.startswith(f"calibration cache {cache}: not UTF-8 text (")
