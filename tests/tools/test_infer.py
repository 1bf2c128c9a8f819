"""clsx infer: lazy sorted listing, the hostile folder, streamed rows, output files, --strict."""

import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image, ImageOps
from runtimes.tiny_models import tiny_onnx_once
from typer.testing import CliRunner

import clsx
from clsx.predict.classifier import Classifier
from clsx.cli import app
from clsx.core.errors import ClsxError
from clsx.predict.listing import iter_image_paths, list_images
from clsx.predict.sinks import CsvWriter
from clsx.tools.infer import infer_to_stream

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return tiny_onnx_once(tmp_path_factory)


def _rows(text):
    return list(csv.reader(io.StringIO(text)))


def _touch(path, content=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------------
# Listing


def test_listing_is_sorted_like_list_images_and_merges_roots(tmp_path):
    for rel in ("b.jpg", "b/c.JPG", "b/a/z.png", "a.png", "notes.txt", "c/deep/er/x.webp", "B.gif", "b-1.jpg"):
        _touch(tmp_path / rel)
    lazy = list(iter_image_paths(tmp_path))
    assert lazy == sorted(list_images(tmp_path)) and len(lazy) == 7
    assert tmp_path / "notes.txt" not in lazy
    # several roots: one sorted stream; a file inside a folder root is listed once; explicit files are
    # taken whatever their extension
    merged = list(iter_image_paths(tmp_path / "c", tmp_path / "b", tmp_path / "b" / "c.JPG", tmp_path / "notes.txt"))
    assert merged == sorted(merged, key=lambda p: p.parts)
    assert merged.count(tmp_path / "b" / "c.JPG") == 1 and tmp_path / "notes.txt" in merged
    with pytest.raises(ClsxError, match="no such file or directory"):
        list(iter_image_paths(tmp_path / "missing"))


def test_listing_is_lazy(tmp_path):
    for i in range(3):
        _touch(tmp_path / f"d{i}" / "x.jpg")
    it = iter_image_paths(tmp_path)
    assert next(it) == tmp_path / "d0" / "x.jpg"
    shutil.rmtree(tmp_path / "d2")  # not listed yet: the walk has not reached it
    assert list(it) == [tmp_path / "d1" / "x.jpg"]


def test_symlinked_folders_are_followed_but_loops_are_not(tmp_path, caplog):
    _touch(tmp_path / "real" / "a.jpg")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real" / "up").symlink_to(tmp_path, target_is_directory=True)  # loops back to the root
    with caplog.at_level("WARNING", logger="clsx"):
        found = list(iter_image_paths(tmp_path))
    assert found == [tmp_path / "link" / "a.jpg", tmp_path / "real" / "a.jpg"]
    assert "symlink loop" in caplog.text


# ---------------------------------------------------------------------------------------------
# The hostile folder


def _hostile_folder(root, photo):
    """Every kind of file a real image folder throws at a classifier."""
    folder = root / "hostile"
    folder.mkdir()
    base = Image.open(photo).convert("RGB").resize((80, 56))
    base.save(folder / "good.jpg", quality=90)
    data = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG\n")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257).save(folder / "gray16.png")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    base.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    base.save(folder / "exif.jpg", exif=exif, quality=95)
    Image.new("RGB", (1000, 1000), (90, 120, 30)).save(folder / "huge.png")  # a bomb once the limit is lowered
    shutil.copy(folder / "good.jpg", folder / "unreadable.jpg")
    os.chmod(folder / "unreadable.jpg", 0)
    (folder / "loop.jpg").symlink_to("loop.jpg")
    (folder / "sub").mkdir()
    base.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "sub" / "nested.png")
    (folder / "sub" / "again").symlink_to("..", target_is_directory=True)

    # references for the EXIF check, outside the folder: the pixels upright, and as stored
    stored = Image.open(folder / "exif.jpg")
    stored.load()
    ref = root / "ref"
    ref.mkdir()
    ImageOps.exif_transpose(stored).save(ref / "upright.png")
    stored.convert("RGB").save(ref / "sideways.png")
    return folder


def _really_unreadable(path):
    try:
        with open(path, "rb") as f:
            f.read(1)
        return False
    except PermissionError:
        return True


def test_hostile_folder(tiny_onnx, photo, tmp_path, monkeypatch):
    folder = _hostile_folder(tmp_path, photo["coffee"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # huge.png (1 Mpx) > 2x the limit: refused
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(folder), "--topk", "3", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    rows = _rows(res.stdout)
    assert rows[0] == CsvWriter.header(3)
    by_name = {os.path.relpath(r[0], folder): r for r in rows[1:]}
    assert [r[0] for r in rows[1:]] == [str(p) for p in sorted(list_images(folder))]  # sorted path order

    unreadable = _really_unreadable(folder / "unreadable.jpg")  # False when the tests run as root
    expected_errors = {
        "empty.jpg": "not a recognised image file",
        "text.jpg": "not a recognised image file",
        "truncated.jpg": "cannot decode image",
        "huge.png": "too many pixels",
        "loop.jpg": "cannot decode image",  # ELOOP: too many levels of symbolic links
    }
    if unreadable:
        expected_errors["unreadable.jpg"] = "permission denied"
    good = {"good.jpg", "cmyk.jpg", "gray16.png", "rgba.png", "palette.gif", "exif.jpg", "sub/nested.png"}
    if not unreadable:
        good.add("unreadable.jpg")
    assert set(by_name) == good | set(expected_errors)
    for name, reason in expected_errors.items():
        row = by_name[name]
        assert row[1:-1] == [""] * 9 and reason in row[-1] and name.split("/")[-1] in row[-1], row
        assert f"clsx: warning: {row[-1]}" in res.stderr
    for name in good:
        row = by_name[name]
        probs = [float(row[3]), float(row[6]), float(row[9])]
        assert row[-1] == "" and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001, row
        assert row[2] == f"class{row[1]}"
    assert "symlink loop" in res.stderr
    assert f"{len(by_name)} images, {len(expected_errors)} failed" in res.stderr

    # The rows are what the Python API says, and EXIF orientation was applied
    ref = tmp_path / "ref"
    api = Classifier(clsx.open(tiny_onnx)).predict([folder / "exif.jpg", ref / "upright.png", ref / "sideways.png"], topk=3)
    assert [int(by_name["exif.jpg"][1]), float(by_name["exif.jpg"][3])] == [api[0].indices[0], round(api[0].probs[0], 6)]
    assert api[0].probs == pytest.approx(api[1].probs, abs=1e-6) and api[0].indices == api[1].indices
    assert api[0].probs != pytest.approx(api[2].probs, abs=1e-6)

    strict = runner.invoke(app, ["infer", str(tiny_onnx), str(folder), "--strict", "-k", "3", "-b", "4"])
    assert strict.exit_code == 1 and strict.stdout == res.stdout  # every row still written
    assert f"clsx: error: {len(expected_errors)} of {len(by_name)} images could not be classified (--strict)" in strict.stderr


def test_permission_denied_maps_to_its_row(tiny_onnx, photo, tmp_path, monkeypatch):
    """The unreadable-file path, also where the tests run as root (chmod 000 does not stop root)."""
    img = tmp_path / "locked.png"
    Image.open(photo["chelsea"]).resize((40, 30)).save(img)
    real_open = Image.open

    def deny(fp, *a, **kw):
        if str(fp).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **kw)

    real_os_open = os.open

    def deny_os(path, *a, **kw):  # clsx opens image files itself (only regular files, see load_image)
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_os_open(path, *a, **kw)

    monkeypatch.setattr(Image, "open", deny)
    monkeypatch.setattr(os, "open", deny_os)
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(img)])
    assert res.exit_code == 0
    assert _rows(res.stdout)[1][-1] == f"{img}: permission denied"


# ---------------------------------------------------------------------------------------------
# Output


class _RecordingStream(io.StringIO):
    def __init__(self):
        super().__init__()
        self.snapshots = []

    def flush(self):
        self.snapshots.append(self.getvalue())
        super().flush()


def test_rows_stream_out_per_batch(tiny_onnx, photos):
    stream = _RecordingStream()
    clf = Classifier(clsx.open(tiny_onnx))
    summary = infer_to_stream(clf, photos[:5], stream, topk=2, batch_size=2)
    assert summary.images == 5 and summary.failed == 0 and summary.images_per_s > 0
    sizes = [len(_rows(s)) for s in stream.snapshots]
    assert sizes[:3] == [3, 5, 6]  # header with the first batch (the model has loaded), then each batch as soon as it is done
    assert all(s.endswith("\n") for s in stream.snapshots)  # a kill between flushes leaves whole rows


def test_output_file_jsonl_and_overwrite_rules(tiny_onnx, photos, tmp_path):
    out = tmp_path / "rows.jsonl"
    args = ["infer", str(tiny_onnx), str(photos[0]), str(photos[1]), "--format", "jsonl", "-o", str(out), "-k", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and res.stdout == ""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["path"] for d in lines] == sorted(str(p) for p in photos[:2])
    assert all(d["error"] is None and len(d["topk"]) == 2 and set(d["topk"][0]) == {"index", "label", "prob"} for d in lines)
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "exists; pass --force" in again.stderr
    assert runner.invoke(app, args + ["--force"]).exit_code == 0
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]  # no temporary files left behind


def test_bad_arguments_are_one_line(tiny_onnx, tmp_path):
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(tmp_path / "nope")])
    assert res.exit_code == 1 and res.stderr.strip() == f"clsx: error: {tmp_path / 'nope'}: no such file or directory"
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(tmp_path), "--format", "xml"])
    assert res.exit_code == 1 and "unknown format 'xml'" in res.stderr
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(tmp_path), "--weights", "x.pth"])
    assert res.exit_code == 1 and "apply to model names" in res.stderr


def test_model_name_runs_on_torch(cifar_module, photos):
    res = runner.invoke(app, ["infer", cifar_module, str(photos[0]), "--input-size", "32", "--num-classes", "4", "-k", "2"])
    assert res.exit_code == 0, res.output
    rows = _rows(res.stdout)
    assert len(rows) == 2 and rows[1][0] == str(photos[0]) and rows[1][-1] == ""
    assert "torch" in res.stderr and "1 images, 0 failed" in res.stderr


# ---------------------------------------------------------------------------------------------
# Random weights are said out loud (a chessboard came out "Border terrier, 0.785" without a word)

RANDOM_WARNING = "clsx: warning: random weights: predictions are meaningless"


def test_random_weights_are_said_at_inference_of_a_model_name(photos, tmp_path):
    small = ["--input-size", "32", "--num-classes", "10", "-k", "2"]
    res = runner.invoke(app, ["infer", "tv:resnet18", str(photos[0]), *small])
    assert res.exit_code == 0, res.output
    assert len(_rows(res.stdout)) == 2 and RANDOM_WARNING not in res.stdout  # stdout stays data
    assert res.stderr.count(RANDOM_WARNING) == 1 and "--weights FILE or --pretrained" in res.stderr
    summary = res.stderr.strip().splitlines()[-1]
    assert "1 images, 0 failed" in summary and summary.endswith("; random weights: predictions are meaningless")

    asked = runner.invoke(app, ["infer", "tv:resnet18", str(photos[0]), *small, "--random-weights"])
    assert asked.exit_code == 0, asked.output
    assert "warning" not in asked.stderr  # the user said so: no warning ...
    assert asked.stderr.strip().splitlines()[-1].endswith("random weights: predictions are meaningless")  # ... the summary still tells

    from clsx import zoo
    from clsx.core.spec import PreprocessOverrides

    net = zoo.build("resnet18", num_classes=10, preprocess=PreprocessOverrides(input_size=(3, 32, 32)), random_weights=True)
    import torch
    torch.save(net.module.state_dict(), tmp_path / "ck.pth")
    trained = runner.invoke(app, ["infer", "tv:resnet18", str(photos[0]), *small, "--weights", str(tmp_path / "ck.pth")])
    assert trained.exit_code == 0, trained.output
    assert "random weights" not in trained.stderr

    both = runner.invoke(app, ["infer", "tv:resnet18", str(photos[0]), *small, "--weights", str(tmp_path / "ck.pth"),
                               "--random-weights"])
    assert both.exit_code == 1 and both.stdout == ""
    (line,) = both.stderr.strip().splitlines()
    assert line.startswith("clsx: error: ") and "--random-weights" in line and "--weights" in line


def test_random_weights_are_said_when_an_artifact_says_so(tiny_onnx, photos):
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(photos[0]), "-k", "2"])
    assert res.exit_code == 0, res.output
    (warning,) = [line for line in res.stderr.splitlines() if line.startswith(RANDOM_WARNING)]
    assert f"{tiny_onnx} (" in warning and "was exported without --weights FILE or --pretrained" in warning
    assert res.stderr.strip().splitlines()[-1].endswith("; random weights: predictions are meaningless")
    quiet = runner.invoke(app, ["infer", str(tiny_onnx), str(photos[0]), "-k", "2", "--random-weights"])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr, quiet.stderr


# ---------------------------------------------------------------------------------------------
# No header before the model has loaded


def test_a_model_that_cannot_load_leaves_stdout_empty(tiny_onnx, photos, monkeypatch):
    """``clsx infer ... > out.csv`` on a machine that cannot run the model: one error line, and an
    empty stdout (not a header-only CSV that looks like a run that found no images)."""
    from clsx.runtimes.base import DeviceError
    from clsx.runtimes.onnxrt import OnnxRuntime

    def no_gpu(self):
        raise DeviceError("no GPU here")

    monkeypatch.setattr(OnnxRuntime, "activate_impl", no_gpu)
    for fmt in ("csv", "jsonl"):
        res = runner.invoke(app, ["infer", str(tiny_onnx), str(photos[0]), str(photos[1]), "-f", fmt])
        assert res.exit_code == 1 and res.stdout == ""
        assert res.stderr.strip().splitlines()[-1] == "clsx: error: no GPU here"


def test_device_cuda_without_cuda_leaves_stdout_empty(tiny_onnx, photos):
    import onnxruntime as ort  # installed by the README's install line; a missing one must fail, not skip
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA: --device cuda may load here")
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(photos[0]), "--device", "cuda"])
    assert res.exit_code == 1 and res.stdout == ""
    assert "CUDAExecutionProvider" in res.stderr


def test_an_empty_folder_still_gives_the_header(tiny_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(tmp_path / "empty"), "-k", "1"])
    assert res.exit_code == 0, res.output
    assert _rows(res.stdout) == [CsvWriter.header(1)] and "no images found" in res.stderr


def test_stream_rows_writes_nothing_when_the_first_batch_fails():
    from clsx.predict.sinks import make_writer, stream_rows

    def batches():
        raise ClsxError("activation failed")
        yield  # pragma: no cover

    out = io.StringIO()
    with pytest.raises(ClsxError, match="activation failed"):
        stream_rows(batches(), make_writer("csv", out, 2))
    assert out.getvalue() == ""
    stream_rows(iter([]), make_writer("csv", out, 2))
    assert _rows(out.getvalue()) == [CsvWriter.header(2)]


def test_output_file_in_a_missing_folder_and_a_folder_path(tiny_onnx, photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(photos[0]), "-o", "new/deeper/rows.csv", "-k", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and len(_rows((tmp_path / "new" / "deeper" / "rows.csv").read_text())) == 2
    res = runner.invoke(app, ["infer", str(tiny_onnx), str(photos[0]), "-o", "other/"])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.strip() == "clsx: error: --output other/ names a folder; give the file to write in it, e.g. other/rows.csv"
    assert not (tmp_path / "other").exists()
