"""Output paths (clsx.core.files): missing folders are checked early and created when written, with
the umask; ``out/`` (a trailing slash) means "into this folder"."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from clsx.core import files
from clsx.core.files import OutputError, OutputSet, check_writable, check_writable_folder, names_folder, output_path


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_trailing_slash_names_a_folder(tmp_path):
    assert names_folder("out/") and names_folder(f"{tmp_path}/new/")
    assert not names_folder("out") and not names_folder(tmp_path / "out") and not names_folder("/")
    assert output_path("new/", "m.onnx") == Path("new/m.onnx")  # created later, not now
    assert output_path(tmp_path, "m.onnx") == tmp_path / "m.onnx"  # an existing folder, no slash needed
    assert output_path(tmp_path / "x.plan", "m.plan") == tmp_path / "x.plan"
    assert not (tmp_path / "new").exists()
    with pytest.raises(OutputError, match=r"--output out/ names a folder; give the file to write in it, e\.g\. out/rows\.csv"):
        files.refuse_folder_path("out/")


def test_missing_folders_pass_the_early_check_and_are_created_with_the_umask(tmp_path, umask_027):
    target = tmp_path / "a" / "b" / "m.onnx"
    check_writable(target)  # nothing is created by the check
    assert not (tmp_path / "a").exists() and sorted(os.listdir(tmp_path)) == []
    with OutputSet([target]) as out:
        out.write_bytes(target, b"graph")
    assert target.read_bytes() == b"graph"
    assert _mode(tmp_path / "a") == _mode(tmp_path / "a" / "b") == 0o750  # 0o777 & ~0o027
    assert _mode(target) == 0o640
    assert sorted(os.listdir(target.parent)) == ["m.onnx"]  # no temporaries left


def test_early_check_refuses_what_cannot_become_a_folder(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputError, match=r"cannot write .*afile/x/m\.onnx: .*afile is not a folder"):
        check_writable(tmp_path / "afile" / "x" / "m.onnx")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="dangling is a broken link"):
        check_writable(tmp_path / "dangling" / "m.onnx")
    with pytest.raises(OutputError, match="it exists and is not a folder"):
        check_writable_folder(tmp_path / "afile")
    check_writable_folder(tmp_path / "repo" / "deeper")
    assert not (tmp_path / "repo").exists()
    with pytest.raises(OutputError, match=r"cannot write /proc/new/m\.onnx"):  # unwritable, even for root
        check_writable("/proc/new/m.onnx")
