"""Fixtures for the C++ library tests: the CMake build and the real-weights AOTInductor package.

Both are cached under ``build/`` in the repository (git-ignored) and reused between runs:

- ``build/cpp``: the CMake build folder; ``cmake --build`` only recompiles what changed.
- ``build/cpp-artifacts/<key>/``: ``lite0.onnx`` + ``lite0.pt2`` (+ sidecars) written by
  ``clsx export timm:tf_efficientnet_lite0 --weights W --aoti``; ``key`` hashes the torch and clsx
  versions and the exporter sources, so a change to any of them exports again.

Without cmake or a C++ compiler the tests skip with the reason; with ``CLSX_REQUIRE_CPP=1`` (CI)
they fail instead, so a broken toolchain cannot pass silently.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CPP_SOURCE = REPO / "cpp"
BUILD_DIR = REPO / "build" / "cpp"
ARTIFACT_CACHE = REPO / "build" / "cpp-artifacts"


def _unavailable(reason: str) -> None:
    if os.environ.get("CLSX_REQUIRE_CPP", "").strip() not in ("", "0"):
        pytest.fail(f"C++ tests required (CLSX_REQUIRE_CPP=1) but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class CppBuild:
    folder: Path
    backends: tuple[str, ...]

    @property
    def classify(self) -> Path:
        return self.folder / "clsx_classify"

    @property
    def preprocess_dump(self) -> Path:
        return self.folder / "clsx_preprocess_dump"


def _torch_dir() -> str:
    import torch

    return os.path.dirname(torch.__file__)


@pytest.fixture(scope="session")
def cpp_build() -> CppBuild:
    """Configure (once) and build the C++ library, example program and tools into build/cpp."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed; to enable: apt-get install cmake g++ libjpeg62-turbo-dev libpng-dev nlohmann-json3-dev")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    configure = ["cmake", "-S", str(CPP_SOURCE), "-B", str(BUILD_DIR), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCLSX_TORCH_DIR={_torch_dir()}"]
    if not (BUILD_DIR / "CMakeCache.txt").exists() and shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    steps = [configure, ["cmake", "--build", str(BUILD_DIR), "-j", "2"]]
    log = []
    log_file = BUILD_DIR / "clsx-tests-build.log"  # the whole CMake output; the skip or failure says where
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log.append(proc.stdout + proc.stderr)
        log_file.write_text("\n".join(f"$ {' '.join(c)}\n{out}" for c, out in zip(steps, log)))
        if proc.returncode != 0:
            last = next((ln.strip() for ln in reversed((proc.stdout + proc.stderr).strip().splitlines()) if "error" in ln.lower()), "")
            if cmd is configure:
                _unavailable(f"CMake cannot configure cpp/ ({last or 'see the log'}); to enable: apt-get install cmake g++ "
                             f"libjpeg62-turbo-dev libpng-dev nlohmann-json3-dev; log: {log_file}")
            pytest.fail(f"the C++ build failed ({last or 'see the log'}); log: {log_file}")
    backends = ()
    for line in log[0].splitlines():
        if "clsx backends in this build:" in line:
            backends = tuple(b.strip() for b in line.split(":", 1)[1].split(",") if b.strip())
    return CppBuild(folder=BUILD_DIR, backends=backends)


def _cache_key(weights: Path) -> str:
    import torch

    import clsx

    h = hashlib.sha256()
    h.update(f"{torch.__version__} {clsx.__version__} {weights.name} {weights.stat().st_size}".encode())
    for src in ("exporter/aoti.py", "exporter/onnx_export.py", "core/metadata.py", "core/spec.py"):
        h.update((REPO / "clsx" / src).read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def lite0_artifacts(lite0_weights) -> tuple[Path, Path]:
    """(lite0.onnx, lite0.pt2) of the real-weights efficientnet-lite0, exported through the CLI
    (`clsx export ... --aoti`), cached in build/cpp-artifacts between runs."""
    from typer.testing import CliRunner

    from clsx.zoo import samples
    from clsx.cli import app

    folder = ARTIFACT_CACHE / _cache_key(lite0_weights)
    onnx, pt2 = folder / "lite0.onnx", folder / "lite0.pt2"
    if all(p.exists() for p in (onnx, pt2, Path(f"{onnx}.json"), Path(f"{pt2}.json"))):
        return onnx, pt2
    if shutil.which("g++") is None and shutil.which("c++") is None:  # AOTInductor compiles with the system compiler
        _unavailable("AOTInductor needs a C++ compiler (g++) to write lite0.pt2; to enable: apt-get install g++")
    folder.mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(app, ["export", samples.DEMO_MODEL, "--weights", str(lite0_weights), "--aoti",
                                      "--force", "-o", str(onnx)])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(onnx), str(pt2)]
    return onnx, pt2
