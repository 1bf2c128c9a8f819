"""`clsx info` says in one line which artifacts are code (AOTInductor packages, TensorRT plans), and
the README says what is trusted as data and what must be trusted like a program."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from escape_graphs import run_clsx, tiny_graph

from clsx.core.metadata import read_metadata

README = Path(__file__).resolve().parents[2] / "README.md"


def _trust_lines(stdout: str) -> list[str]:
    return [ln for ln in stdout.splitlines() if ln.startswith("trust ")]


@pytest.mark.parametrize("suffix, kind, says", [
    (".pt2", "aoti", "an AOTInductor package holds a compiled shared library that is loaded (dlopen) and run, "
                     "by Python and by the C++ library"),
    (".plan", "tensorrt", "a TensorRT plan can embed a lean runtime and plugin libraries that TensorRT loads and runs"),
])
def test_info_marks_code_artifacts(tmp_path, suffix, kind, says):
    doc = read_metadata(tiny_graph(tmp_path / "src"))
    doc["artifact"] = kind
    art = tmp_path / f"model{suffix}"
    art.write_bytes(b"\0" * 64)
    art.with_name(art.name + ".json").write_text(json.dumps(doc))
    res = run_clsx("info", art)
    assert res.returncode == 0, res.stderr
    (line,) = _trust_lines(res.stdout)
    assert line.split(None, 1)[1] == (f"CODE, not data: {says}; open it only if you trust where it came from, "
                                      "as you would a program")


def test_info_does_not_mark_data(tmp_path):
    graph = tiny_graph(tmp_path / "art")
    res = run_clsx("info", graph)
    assert res.returncode == 0, res.stderr
    assert _trust_lines(res.stdout) == []


def test_readme_has_the_trust_section():
    text = README.read_text(encoding="utf-8")
    section = text.split("### Trust: which files are data and which are code", 1)[1].split("\n## ", 1)[0]
    for phrase in ("no pickled code", "inside the artifact's folder", "never code", ".pt2", "dlopen",
                   "lean runtime and plugin", "trust it like a program", "sha256 the driver sent"):
        assert phrase in section, phrase
