"""End to end: `clsx export --aoti` -> lite0.pt2 -> C++ `clsx_classify` prints what `clsx infer` prints.

The real ImageNet efficientnet-lite0 weights on the real photos: the C++ program (AOTInductor
backend) and `clsx infer` (ONNX Runtime on the lite0.onnx exported alongside) must print the same
header, the same paths in the same order, the same top-5 indices and labels, and probabilities
equal up to float noise between two runtimes. Bad input through the example program: exit 1 and
one clear line on stderr.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clsx.core.errors import OutputExistsError

PROB_TOLERANCE = 1e-4  # two runtimes (ORT, AOTInductor) on the same FP32 weights


def _aoti(cpp_build) -> None:
    if "aoti" not in cpp_build.backends:
        pytest.skip(f"the C++ build has no AOTInductor backend (built: {', '.join(cpp_build.backends) or 'none'})")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, photos) -> Path:
    """The real photos in one folder (a subfolder too, to exercise the recursive walk), plus a
    file that is not an image, which must become an error row in both programs."""
    folder = tmp_path_factory.mktemp("photos")
    for i, p in enumerate(photos):
        target = folder / ("more" if i % 3 == 0 else ".") / p.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(p, target)
    (folder / "broken.jpg").write_bytes(b"definitely not a JPEG")
    return folder


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_export_aoti_writes_package_and_sidecar(lite0_artifacts):
    onnx, pt2 = lite0_artifacts
    doc = json.loads(Path(f"{pt2}.json").read_text())
    assert doc["artifact"] == "aoti" and doc["precision"] == "fp32"
    assert doc["model"] == json.loads(Path(f"{onnx}.json").read_text())["model"]  # one contract for both
    assert doc["inputs"][0]["shape"] == ["batch", 3, 224, 224] and doc["inputs"][0]["max_batch"] >= 32
    assert doc["verification"]["passed"] is True, doc["verification"]
    assert pt2.stat().st_size > 10_000_000  # the weights are inside


def test_cpp_classify_prints_the_same_csv_as_clsx_infer(cpp_build, lite0_artifacts, photo_dir, photos):
    _aoti(cpp_build)
    from clsx.tools.infer import run_infer

    onnx, pt2 = lite0_artifacts
    proc = subprocess.run([str(cpp_build.classify), str(pt2), str(photo_dir), "--topk", "5"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = io.StringIO()
    run_infer(str(onnx), [str(photo_dir)], stdout=out, topk=5)
    cpp_rows, py_rows = _rows(proc.stdout), _rows(out.getvalue())

    assert cpp_rows[0] == py_rows[0]  # header
    assert [r[0] for r in cpp_rows] == [r[0] for r in py_rows]  # paths, in the same order
    assert len(cpp_rows) == len(photos) + 2  # header + photos + broken.jpg
    for cpp, py in zip(cpp_rows[1:], py_rows[1:]):
        if py[-1]:  # an image clsx cannot read: both say so in the error column, nothing else
            assert cpp[-1] and cpp[1:-1] == py[1:-1] == [""] * 15, (cpp, py)
            continue
        assert cpp[-1] == "", cpp
        indices = slice(1, 16, 3)
        labels = slice(2, 16, 3)
        assert cpp[indices] == py[indices], f"{py[0]}: C++ top-5 {cpp[indices]} != Python {py[indices]}"
        assert cpp[labels] == py[labels]
        probs = zip(cpp[3:16:3], py[3:16:3])
        assert all(abs(float(a) - float(b)) <= PROB_TOLERANCE for a, b in probs), (cpp, py)
    assert "images, 1 failed" in proc.stderr and "aoti" in proc.stderr
    assert re.search(r"images, 1 failed, [0-9.]+ s, [0-9.]+ img/s \[", proc.stderr), proc.stderr


def test_cpp_classify_topk_above_classes_is_capped(cpp_build, lite0_artifacts, photo):
    _aoti(cpp_build)
    _onnx, pt2 = lite0_artifacts
    proc = subprocess.run([str(cpp_build.classify), str(pt2), str(photo["chelsea"]), "--topk", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert rows[0] == ["path", "top1_index", "top1_label", "top1_prob", "error"]
    assert rows[1][1] in {"281", "282", "285"}  # a cat: tabby, tiger cat or Egyptian cat


@pytest.fixture
def copied_package(lite0_artifacts, tmp_path) -> Path:
    """The package alone (a hard link, no copy of 21 MB), for tests that alter its sidecar."""
    _onnx, pt2 = lite0_artifacts
    target = tmp_path / "model.pt2"
    try:
        target.hardlink_to(pt2)
    except OSError:
        shutil.copy(pt2, target)
    return target


def test_cpp_missing_sidecar_is_one_line_exit_1(cpp_build, copied_package, photo):
    proc = subprocess.run([str(cpp_build.classify), str(copied_package), str(photo["coffee"])], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("clsx_classify: error: ") and "model.pt2.json" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cpp_newer_schema_is_refused(cpp_build, lite0_artifacts, copied_package, photo):
    _onnx, pt2 = lite0_artifacts
    doc = json.loads(Path(f"{pt2}.json").read_text())
    doc["schema_version"] = 99
    Path(f"{copied_package}.json").write_text(json.dumps(doc))
    proc = subprocess.run([str(cpp_build.classify), str(copied_package), str(photo["coffee"])], capture_output=True, text=True)
    assert proc.returncode == 1 and "schema 99 is newer" in proc.stderr


def test_cpp_wrong_input_size_in_sidecar_is_an_error(cpp_build, lite0_artifacts, copied_package, photo):
    """A sidecar that does not describe the package (input 3x160x160 for a 224 graph). The compiled
    code does not check shapes (it would read out of bounds); the library compares the sidecar
    with the size recorded inside the package and refuses with a message."""
    _aoti(cpp_build)
    _onnx, pt2 = lite0_artifacts
    doc = json.loads(Path(f"{pt2}.json").read_text())
    doc["model"]["preprocess"]["input_size"] = [3, 160, 160]
    Path(f"{copied_package}.json").write_text(json.dumps(doc))
    proc = subprocess.run([str(cpp_build.classify), str(copied_package), str(photo["coffee"])], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "wrong input size" in proc.stderr and "compiled for 3x224x224" in proc.stderr and "3x160x160" in proc.stderr


def test_cpp_help_explains_the_program(cpp_build):
    """--help is a page on stdout (exit 0), not one usage line; a bad option is usage on stderr (exit 2)."""
    proc = subprocess.run([str(cpp_build.classify), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    for needed in ("usage: clsx_classify ARTIFACT PATH...", "--topk", "--backend", "sidecar", "img/s", "trusted"):
        assert needed in proc.stdout, needed
    bad = subprocess.run([str(cpp_build.classify), "--nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == "" and "unknown option --nope" in bad.stderr


def test_cpp_missing_image_path_fails_before_loading(cpp_build, tmp_path):
    proc = subprocess.run([str(cpp_build.classify), str(tmp_path / "m.pt2"), str(tmp_path / "nothing")], capture_output=True, text=True)
    assert proc.returncode == 1 and "nothing: no such file or directory" in proc.stderr


def test_ctest_unit_tests_pass(cpp_build):
    """The pure C++ unit tests (error cases, resize/crop arithmetic, EXIF, top-k) through ctest."""
    proc = subprocess.run(["ctest", "--test-dir", str(cpp_build.folder), "--output-on-failure"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_export_aoti_refuses_existing_output_before_compiling(tmp_path, lite0):
    from clsx.exporter.aoti import export_aoti

    target = tmp_path / "lite0.pt2"
    target.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        export_aoti(lite0, target)
    assert target.read_bytes() == b"keep me"


def test_aoti_paths_and_suffix(tmp_path, lite0):
    from clsx.exporter.aoti import aoti_path_for, export_aoti
    from clsx.exporter.artifacts import ExportError

    assert aoti_path_for(Path("out/lite0.onnx")) == Path("out/lite0.pt2")
    with pytest.raises(ExportError, match=r"must end in \.pt2"):
        export_aoti(lite0, tmp_path / "lite0.zip")
