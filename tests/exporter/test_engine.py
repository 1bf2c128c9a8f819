"""The TensorRT engine builder, on real TensorRT-RTX builds (its builder runs without a GPU).

The graphs are made here, self-contained: a small conv net exported to ONNX with clsx metadata, its
FP16 twin (FP32 I/O kept) and an INT8 Q/DQ version quantized with the TensorRT-friendly ONNX Runtime
settings. Executing engines needs a GPU: those tests are marked ``gpu`` and skip here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from clsx.core.errors import ClsxError, MissingDependencyError, OutputExistsError
from clsx.core.metadata import embed_in_onnx, make_document, read_metadata, sidecar_path, spec_of
from clsx.runtimes import trt_lib
from clsx.runtimes.trt_lib import EngineBuildError, EngineIncompatibleError, check_engine_compatible
from clsx.exporter.engine import build_engine
from clsx.core.spec import ModelSpec, PreprocessSpec

trt_rtx = pytest.importorskip("tensorrt_rtx", reason="needs tensorrt_rtx (pip install 'clsx[tensorrt-rtx]')")

SIZE = 32
CLASSES = 1000  # a 512x1000 classifier head: enough weights that precision shows in the plan size
SPEC = ModelSpec(name="tinynet", source="custom", num_classes=CLASSES,
                 preprocess=PreprocessSpec(input_size=(3, SIZE, SIZE), resize_size=36))


# ---------------------------------------------------------------------------------------------
# Fixtures: ONNX graphs made here


def _tiny_net():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, CLASSES),
    ).eval()


def _export(path: Path, *, dynamic: bool = True, precision: str = "fp32", external_data: bool = False) -> Path:
    import torch

    net = _tiny_net()
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    torch.onnx.export(net, torch.randn(2 if dynamic else 1, 3, SIZE, SIZE), str(path), dynamo=False,
                      input_names=["input"], output_names=["logits"], dynamic_axes=axes, opset_version=17)
    _embed(path, precision, batch="batch" if dynamic else 1, external_data=external_data)
    return path


def _embed(path: Path, precision: str, *, batch: str | int = "batch", external_data: bool = False) -> None:
    import onnx

    doc = make_document(SPEC, artifact="onnx", precision=precision,
                        inputs=[{"name": "input", "shape": [batch, 3, SIZE, SIZE], "dtype": "float32"}],
                        outputs=[{"name": "logits", "shape": [batch, CLASSES], "dtype": "float32"}],
                        producer={"exporter": "test fixture"})
    model = onnx.load(str(path))
    embed_in_onnx(model, doc)
    if external_data:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))


def _fp16(src: Path, dst: Path) -> Path:
    import onnx
    from onnxconverter_common import float16

    onnx.save_model(float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))
    _embed(dst, "fp16")
    return dst


def _int8(src: Path, dst: Path) -> Path:
    """Q/DQ with the settings TensorRT's parser accepts (see DESIGN.md), on a few random batches."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._it = iter([{"input": rng.standard_normal((2, 3, SIZE, SIZE), dtype=np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self._it, None)

    pre = dst.with_name("pre." + dst.name)
    quant_pre_process(str(src), str(pre))
    quantize_static(str(pre), str(dst), Batches(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "DedicatedQDQPair": True, "QuantizeBias": False})
    _embed(dst, "int8")
    return dst


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("graphs")
    fp32 = _export(d / "net.onnx")
    return {"fp32": fp32, "fp16": _fp16(fp32, d / "net.fp16.onnx"), "int8": _int8(fp32, d / "net.int8.onnx")}


@pytest.fixture(scope="module")
def engines(graphs, tmp_path_factory) -> dict:
    """One real TensorRT-RTX engine per precision, dynamic batch 1/8/32."""
    d = tmp_path_factory.mktemp("engines")
    return {p: build_engine(g, d / f"net.{p}.plan", target="rtx") for p, g in graphs.items()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".plan", ".tmp") or p.name.endswith(".plan.json"))


# ---------------------------------------------------------------------------------------------
# Real builds


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_builds_plan_and_sidecar(engines, graphs, precision):
    res = engines[precision]
    onnx_doc = read_metadata(graphs[precision])
    doc = json.loads(res.sidecar.read_text())
    assert res.sidecar == sidecar_path(res.path) and doc == res.metadata
    assert res.flavour == "tensorrt_rtx" and res.seconds > 0
    assert doc["artifact"] == "tensorrt" and doc["precision"] == precision
    assert doc["parent_sha256"] == _sha256(graphs[precision])
    assert spec_of(doc) == spec_of(onnx_doc) == SPEC
    assert doc["inputs"] == onnx_doc["inputs"] and doc["outputs"] == onnx_doc["outputs"]
    t = doc["tensorrt"]
    assert t["flavour"] == "tensorrt_rtx" and t["version"] == trt_rtx.__version__
    assert t["profile"] == {"input": "input", "min": [1, 3, SIZE, SIZE], "opt": [8, 3, SIZE, SIZE],
                            "max": [32, 3, SIZE, SIZE]}
    assert t["compute_capabilities"] == list(trt_lib.RTX_DEFAULT_COMPUTE_CAPABILITIES) and t["compute_capabilities_default"]
    assert t["strongly_typed"] and not t["legacy_weak_typing"] and t["hardware_compat"] == "none"
    # the plan is the raw TensorRT blob the sidecar describes (no clsx wrapper around it)
    plan = res.path.read_bytes()
    assert t["plan_bytes"] == len(plan) and t["plan_sha256"] == _sha256(res.path)
    assert oct(res.path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_precision_of_the_graph_is_what_tensorrt_compiles(engines):
    """Strongly typed: FP16 and INT8 show up in the parsed network and shrink the plan's weights."""
    nets = {p: e.metadata["tensorrt"]["network"] for p, e in engines.items()}
    assert "half" not in nets["fp32"]["dtypes"] and "int8" not in nets["fp32"]["dtypes"]
    assert nets["fp32"]["qdq_layers"] == 0 and nets["fp16"]["qdq_layers"] == 0
    assert "half" in nets["fp16"]["dtypes"]
    assert "int8" in nets["int8"]["dtypes"] and nets["int8"]["qdq_layers"] >= 10
    size = {p: e.metadata["tensorrt"]["plan_bytes"] for p, e in engines.items()}
    assert size["fp16"] < 0.7 * size["fp32"] and size["int8"] < 0.7 * size["fp32"], size


def test_plan_header_passes_tensorrt_rtx_own_check(engines):
    """TensorRT-RTX reads the header without a GPU: ours is well formed, a damaged one is not."""
    plan = engines["fp32"].path.read_bytes()
    _, problems = trt_lib.rtx_engine_validity(plan)
    assert "malformed_engine" not in problems
    _, problems = trt_lib.rtx_engine_validity(b"\0\0\0\0" + plan[4:])
    assert "malformed_engine" in problems


def test_profile_targets_and_options_reach_the_sidecar(graphs, tmp_path):
    res = build_engine(graphs["fp16"], tmp_path / "a.plan", target="rtx", min_batch=2, opt_batch=4, max_batch=16,
                       compute_capabilities=["8.6", "SM89", "sm86"], opt_level=2, workspace_gb=0.5)
    t = res.metadata["tensorrt"]
    assert t["profile"]["min"][0] == 2 and t["profile"]["opt"][0] == 4 and t["profile"]["max"][0] == 16
    assert t["compute_capabilities"] == ["sm86", "sm89"] and not t["compute_capabilities_default"]
    assert t["opt_level"] == 2 and t["workspace_bytes"] == 2**29


def test_timing_cache_is_ignored_on_rtx_and_says_so(graphs, tmp_path, caplog):
    """TensorRT-RTX has no timing cache that matters (no-op since 1.2, no effect on the engine, and
    setting one forces a GPU query): the builder leaves it alone, warns, and the sidecar records it.
    Its counterpart is the runtime cache of JIT-compiled kernels, which belongs to the engine runtime."""
    cache = tmp_path / "timing.cache"
    a = build_engine(graphs["int8"], tmp_path / "a.plan", target="rtx", timing_cache=cache)
    assert a.metadata["tensorrt"]["timing_cache"] == {"path": str(cache), "supported": False}
    assert not cache.exists()
    assert "TensorRT-RTX has no timing cache" in caplog.text


def test_fixed_batch_graph_builds_with_batch_one_profile(tmp_path):
    onnx_path = _export(tmp_path / "fixed.onnx", dynamic=False)
    res = build_engine(onnx_path, min_batch=1, opt_batch=1, max_batch=1, target="rtx")
    assert res.path == tmp_path / "fixed.plan"
    assert res.metadata["tensorrt"]["profile"]["max"] == [1, 3, SIZE, SIZE]


def test_external_data_graph_builds_beside_its_weights(tmp_path):
    onnx_path = _export(tmp_path / "ext.onnx", external_data=True)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 1_000_000
    res = build_engine(onnx_path, target="rtx")
    assert res.metadata["tensorrt"]["plan_bytes"] > 1_000_000  # the weights made it into the plan


def test_existing_output_needs_force(engines, graphs):
    plan = engines["fp32"].path
    before = plan.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        build_engine(graphs["fp32"], plan, target="rtx")
    assert plan.read_bytes() == before
    res = build_engine(graphs["fp32"], plan.parent, target="rtx", force=True)  # a folder: net.plan inside
    assert res.path == plan.parent / "net.plan"


# ---------------------------------------------------------------------------------------------
# Bad input: one clear line, nothing left behind


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_unsupported_operator_is_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])
    node = helper.make_node("Mystery", ["input"], ["logits"], name="mystery_0", domain="com.example")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    path = tmp_path / "mystery.onnx"
    onnx.save_model(model, str(path))
    _embed(path, "fp32")
    with pytest.raises(EngineBuildError) as exc:
        build_engine(path, target="rtx")
    msg = _one_line(exc)
    assert "cannot parse" in msg and "unsupported operator Mystery" in msg and "mystery_0" in msg
    assert _leftovers(tmp_path) == []


def test_builder_failure_is_one_line_and_leaves_no_plan(graphs, tmp_path):
    """Turing cannot run FP32 GEMMs in TensorRT-RTX: the builder's own reason, in one line."""
    with pytest.raises(EngineBuildError) as exc:
        build_engine(graphs["fp32"], tmp_path / "turing.plan", target="rtx", compute_capabilities=["sm75"])
    msg = _one_line(exc)
    assert "could not build an engine" in msg and "Turing" in msg
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(min_batch=8, opt_batch=4, max_batch=32), "min <= opt <= max"),
        (dict(min_batch=1, opt_batch=16, max_batch=8), "min <= opt <= max"),
        (dict(min_batch=0), "at least 1"),
        (dict(opt_level=7), "0 to 5"),
        (dict(workspace_gb=0), "positive"),
        (dict(hardware_compat="ampere+"), "use --compute-capability"),
        (dict(hardware_compat="turing"), "must be one of"),
        (dict(version_compatible=True), "only run on the TensorRT-RTX release"),
        (dict(compute_capabilities=["sm90"]), "cannot target sm90"),
        (dict(compute_capabilities=["fast"]), "not a compute capability"),
        (dict(legacy_weak_typing=True), "older than 10.12"),
        (dict(target="cuda"), "unknown TensorRT target"),
    ],
)
def test_bad_options_are_one_line(graphs, tmp_path, kwargs, expected):
    with pytest.raises(ClsxError) as exc:
        build_engine(graphs["fp32"], tmp_path / "x.plan", **{"target": "rtx", **kwargs})
    assert expected in _one_line(exc)
    assert _leftovers(tmp_path) == []


def test_fixed_batch_with_max_batch_over_one(tmp_path):
    onnx_path = _export(tmp_path / "fixed.onnx", dynamic=False)
    with pytest.raises(ClsxError) as exc:
        build_engine(onnx_path, target="rtx", max_batch=32)
    msg = _one_line(exc)
    assert "fixed batch of 1" in msg and "--max-batch 1" in msg
    assert _leftovers(tmp_path) == []


def test_external_data_moved_away(tmp_path):
    onnx_path = _export(tmp_path / "ext.onnx", external_data=True)
    (tmp_path / "ext.onnx.data").rename(tmp_path / "elsewhere.bin")
    with pytest.raises(ClsxError) as exc:
        build_engine(onnx_path, target="rtx")
    msg = _one_line(exc)
    assert "ext.onnx.data" in msg and "missing" in msg
    assert _leftovers(tmp_path) == []


def test_unwritable_output(graphs, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(ClsxError) as exc:
        build_engine(graphs["fp32"], blocker / "net.plan", target="rtx")
    assert "cannot write the output" in _one_line(exc)
    with pytest.raises(ClsxError, match="cannot write the timing cache"):
        build_engine(graphs["fp32"], tmp_path / "net.plan", target="rtx", timing_cache=blocker / "t.cache")
    assert _leftovers(tmp_path) == []


def test_cli_build_into_a_folder_path_creates_it(graphs, tmp_path, monkeypatch):
    """``clsx build m.onnx -o plans/``: the folder is created and gets MODEL.plan; the path prints as given."""
    import shutil

    from typer.testing import CliRunner

    from clsx.cli import app

    monkeypatch.chdir(tmp_path)
    shutil.copy(graphs["fp32"], tmp_path / "net.onnx")
    res = CliRunner().invoke(app, ["-q", "build", "net.onnx", "-o", "plans/new/", "--target", "rtx", "--max-batch", "8"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "plans/new/net.plan"
    assert sorted(p.name for p in (tmp_path / "plans" / "new").iterdir()) == ["net.plan", "net.plan.json"]
    res = CliRunner().invoke(app, ["-q", "build", "net.onnx", "--target", "rtx", "--max-batch", "8"])
    assert res.exit_code == 0 and res.stdout.strip() == "net.plan"  # beside the ONNX, in the form it was given


def test_info_formats_the_tensorrt_section(engines):
    """``clsx info`` on a plan: the tensorrt section as readable rows, not one raw JSON line."""
    from typer.testing import CliRunner

    from clsx.cli import app

    res = CliRunner().invoke(app, ["info", str(engines["int8"].path)])
    assert res.exit_code == 0, res.output
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in res.stdout.splitlines()}
    assert "{" not in res.stdout  # no section printed as JSON
    ccs = ",".join(trt_lib.RTX_DEFAULT_COMPUTE_CAPABILITIES)
    assert rows["tensorrt"] == f"tensorrt_rtx {trt_rtx.__version__}, int8, strongly typed, targets {ccs} (builder default)"
    assert rows["profile"] == f"input: min 1x3x{SIZE}x{SIZE}, opt 8x3x{SIZE}x{SIZE}, max 32x3x{SIZE}x{SIZE}"
    assert rows["network"].endswith("Q/DQ, computes in " + ", ".join(engines["int8"].metadata["tensorrt"]["network"]["dtypes"]))
    assert rows["built"].startswith("from net.int8.onnx in ") and "opt level" in rows["built"]
    t = engines["int8"].metadata["tensorrt"]
    assert rows["plan"] == f"{t['plan_bytes'] / 1e6:.1f} MB, sha256 {t['plan_sha256'][:12]}"


def test_infer_on_a_plan_without_a_gpu_leaves_stdout_empty(engines, photos):
    import torch
    from typer.testing import CliRunner

    from clsx.cli import app

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU, where a plan cannot load")
    res = CliRunner().invoke(app, ["infer", str(engines["fp32"].path), str(photos[0])])
    assert res.exit_code == 1 and res.stdout == ""  # no header-only CSV
    assert "NVIDIA GPU" in res.stderr.strip().splitlines()[-1]


def test_failed_write_leaves_neither_plan_nor_sidecar(graphs, tmp_path, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    real_link = os.link

    def link(src, dst, **kw):  # publishing without --force links exclusively
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_link(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    with pytest.raises(ClsxError, match="No space left"):
        build_engine(graphs["fp32"], tmp_path / "net.plan", target="rtx")
    assert list(tmp_path.iterdir()) == []


def test_graph_without_clsx_metadata_builds_and_records_what_it_says(tmp_path):
    import onnx

    path = _export(tmp_path / "plain.onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save_model(model, str(path))
    res = build_engine(path, target="rtx")  # any valid ONNX builds, like trtexec (issue: any ONNX in)
    assert res.metadata["model"]["preprocess"] is None and res.metadata["inputs"][0]["name"] == "input"
    assert res.metadata["tensorrt"]["profile"]["max"][0] == 32


def test_missing_tensorrt_names_the_extra(graphs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)  # makes `import tensorrt_rtx` fail
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError) as exc:
        build_engine(graphs["fp32"], tmp_path / "x.plan", target="rtx")
    assert "pip install 'clsx[tensorrt-rtx]'" in _one_line(exc)
    with pytest.raises(MissingDependencyError) as exc:
        build_engine(graphs["fp32"], tmp_path / "x.plan", target="auto")
    assert "clsx[tensorrt-rtx]" in _one_line(exc) and "clsx[tensorrt]" in str(exc.value)
    assert trt_lib.available_flavours() == []


def test_target_auto_picks_what_is_installed(caplog):
    assert trt_lib.available_flavours() == [f for f in trt_lib.FLAVOURS if _importable(f)]
    caplog.set_level("INFO")
    flavour = trt_lib.flavour_for_target("auto")
    assert flavour in trt_lib.available_flavours() and f"building with {flavour}" in caplog.text
    assert trt_lib.flavour_for_target("rtx") == "tensorrt_rtx" and trt_lib.flavour_for_target("TensorRT") == "tensorrt"


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except Exception:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Engine <-> machine compatibility (the runtime calls this before deserializing)


def _check(doc, *, version=None, cc="sm89", missing=False):
    def installed(flavour):
        if missing:
            raise MissingDependencyError("nope")
        return version or doc["tensorrt"]["version"]

    return check_engine_compatible(doc, installed=installed, gpu_cc=lambda _device: cc)


def test_compatible_engine_passes(engines):
    doc = engines["fp16"].metadata
    for cc in trt_lib.RTX_DEFAULT_COMPUTE_CAPABILITIES:
        assert _check(doc, cc=cc) is None


@pytest.mark.parametrize(
    "change, expected",
    [
        (dict(version="1.0.0.21"), "cannot run on tensorrt_rtx 1.0.0.21"),
        (dict(cc="sm90"), "this GPU is sm90"),
        (dict(cc="sm75"), "--compute-capability sm75"),
        (dict(cc=None), "torch.cuda sees none"),
        (dict(missing=True), "pip install 'clsx[tensorrt-rtx]'"),
    ],
)
def test_incompatible_engine_is_refused_with_the_reason(engines, change, expected):
    with pytest.raises(ClsxError) as exc:
        _check(engines["fp16"].metadata, **change)
    assert expected in _one_line(exc)


def test_standard_tensorrt_compatibility_rules(engines):
    doc = json.loads(json.dumps(engines["fp32"].metadata))
    doc["tensorrt"].update(flavour="tensorrt", version="10.13.2.6", compute_capabilities=["sm86"],
                           hardware_compat="none", version_compatible=False)
    assert _check(doc, cc="sm86") is None
    with pytest.raises(EngineIncompatibleError, match="this GPU is sm89"):
        _check(doc, cc="sm89")
    with pytest.raises(EngineIncompatibleError, match="tied to the release"):
        _check(doc, cc="sm86", version="10.14.1.48")
    doc["tensorrt"].update(hardware_compat="ampere+", version_compatible=True)
    assert _check(doc, cc="sm120", version="10.14.1.48") is None  # later 10.x, any Ampere+ GPU
    with pytest.raises(EngineIncompatibleError, match="Ampere and newer"):
        _check(doc, cc="sm75")
    with pytest.raises(EngineIncompatibleError, match="needs tensorrt 10.x"):
        _check(doc, cc="sm86", version="11.0.0.1")
    with pytest.raises(EngineIncompatibleError, match="not a TensorRT engine"):
        _check({**doc, "artifact": "onnx"})


def test_standard_tensorrt_rules_without_a_gpu(monkeypatch):
    from clsx.exporter import engine as tb

    monkeypatch.setattr(trt_lib, "gpu_compute_capability", lambda device=None: None)
    with pytest.raises(ClsxError, match="needs a CUDA GPU to build"):
        tb._compute_capability_targets("tensorrt", None, "none")
    with pytest.raises(ClsxError, match="selects TensorRT-RTX targets"):
        tb._compute_capability_targets("tensorrt", ["sm86"], "none")
    monkeypatch.setattr(trt_lib, "gpu_compute_capability", lambda device=None: "sm90")
    assert tb._compute_capability_targets("tensorrt", None, "ampere+") == (["sm90"], False)
    tb._check_legacy_allowed("tensorrt", "10.11.0.33")  # the labelled legacy path exists only here
    with pytest.raises(ClsxError, match="older than 10.12"):
        tb._check_legacy_allowed("tensorrt", "10.12.0.36")


class _FakeCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def serialize(self) -> bytes:
        return self.blob + b"+grown"


class _FakeConfig:
    """Just the timing-cache calls of a standard TensorRT IBuilderConfig."""

    def __init__(self, accept: bool) -> None:
        self.accept, self.cache = accept, None

    def create_timing_cache(self, blob: bytes) -> _FakeCache:
        return _FakeCache(bytes(blob))

    def set_timing_cache(self, cache: _FakeCache, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        self.cache = cache
        return self.accept or cache.blob == b""

    def get_timing_cache(self) -> _FakeCache:
        return self.cache


def test_standard_timing_cache_bookkeeping(tmp_path):
    """Load-or-start, refuse a mismatched cache, save atomically (the real build: the tensorrt-marked test)."""
    from clsx.exporter import engine as tb

    path = tmp_path / "t.cache"
    config = _FakeConfig(accept=True)
    assert tb._load_timing_cache(None, config, path, "tensorrt") == {"path": str(path), "supported": True, "loaded_bytes": 0}
    assert tb._save_timing_cache(config, path) == len(b"+grown") and path.read_bytes() == b"+grown"
    config = _FakeConfig(accept=True)
    assert tb._load_timing_cache(None, config, path, "tensorrt")["loaded_bytes"] == len(b"+grown")
    config = _FakeConfig(accept=False)  # made on another GPU / TensorRT version
    assert tb._load_timing_cache(None, config, path, "tensorrt")["loaded_bytes"] == 0 and config.cache.blob == b""


def test_compute_capability_spellings():
    assert [trt_lib.normalize_compute_capability(s) for s in ("sm86", "SM_89", "12.0", "75", "sm121")] == [
        "sm86", "sm89", "sm120", "sm75", "sm121"]
    assert trt_lib.compute_capability_value("sm120") == (12, 0)
    assert trt_lib.version_tuple("10.13.2.6rc1") == (10, 13, 2, 6)


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_build_prints_plan_and_json(graphs, tmp_path):
    from typer.testing import CliRunner

    from clsx.cli import app

    runner = CliRunner()
    plan = tmp_path / "cli.plan"
    res = runner.invoke(app, ["build", str(graphs["int8"]), "-o", str(plan), "--target", "rtx",
                              "--compute-capability", "sm86,sm89", "--max-batch", "8", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["path"] == str(plan) and out["compute_capabilities"] == ["sm86", "sm89"]
    assert out["profile"]["max"][0] == 8 and plan.is_file()
    assert "tensorrt_rtx" in res.stderr  # the log says which flavour built it
    res = runner.invoke(app, ["build", str(graphs["int8"]), "-o", str(plan)])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [f"clsx: error: {plan} already exists; pass --force to overwrite it"]


# ---------------------------------------------------------------------------------------------
# Needs hardware or the full TensorRT package


@pytest.mark.gpu
def test_rtx_engine_runs_and_matches_onnxruntime(graphs, tmp_path):
    """Execute the TensorRT-RTX plan on the GPU and compare with ONNX Runtime on CPU."""
    import onnxruntime as ort
    import torch

    cc = trt_lib.gpu_compute_capability()
    if cc not in trt_lib.RTX_COMPUTE_CAPABILITIES:
        pytest.skip(f"TensorRT-RTX does not run on {cc}")
    res = build_engine(graphs["fp32"], tmp_path / "net.plan", target="rtx", compute_capabilities=["current"])
    check_engine_compatible(res.metadata)
    trt = trt_rtx
    logger = trt_lib.make_logger(trt)
    engine = trt.Runtime(logger).deserialize_cuda_engine(res.path.read_bytes())
    context = engine.create_execution_context()
    x = torch.randn(4, 3, SIZE, SIZE, device="cuda")
    y = torch.empty(4, CLASSES, device="cuda")
    context.set_input_shape("input", tuple(x.shape))
    context.set_tensor_address("input", x.data_ptr())
    context.set_tensor_address("logits", y.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    ref = ort.InferenceSession(str(graphs["fp32"]), providers=["CPUExecutionProvider"]).run(None, {"input": x.cpu().numpy()})[0]
    np.testing.assert_allclose(y.cpu().numpy(), ref, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_standard_tensorrt_build_reuses_timing_cache(graphs, tmp_path):
    cache = tmp_path / "timing.cache"
    first = build_engine(graphs["fp16"], tmp_path / "a.plan", target="tensorrt", timing_cache=cache)
    assert cache.stat().st_size > 0 and first.metadata["tensorrt"]["timing_cache"]["loaded_bytes"] == 0
    second = build_engine(graphs["fp16"], tmp_path / "b.plan", target="tensorrt", timing_cache=cache)
    assert second.metadata["tensorrt"]["timing_cache"]["loaded_bytes"] > 0
    assert second.metadata["tensorrt"]["compute_capabilities"] == [trt_lib.gpu_compute_capability()]
    check_engine_compatible(second.metadata)


def test_uint8_nhwc_graph_builds_with_an_nhwc_profile(graphs, tmp_path):
    """A graph that takes uint8 pixels (``clsx export --input uint8``) parses (TensorRT takes a uint8
    network input only straight into a Cast) and gets its profile in the graph's own layout."""
    import onnx

    from clsx.core.metadata import read_metadata
    from clsx.core.pixel_input import add_pixel_input
    from clsx.core.spec import InputFormat

    src = tmp_path / "net.uint8.onnx"
    model = onnx.load(str(graphs["fp16"]))
    add_pixel_input(model, SPEC.preprocess, InputFormat("uint8", "NHWC"))
    doc = read_metadata(graphs["fp16"])
    doc["inputs"] = [{"name": "input", "shape": ["batch", SIZE, SIZE, 3], "dtype": "uint8", "layout": "NHWC"}]
    embed_in_onnx(model, doc)
    onnx.save(model, str(src))
    res = build_engine(src, tmp_path / "u8.plan", target="rtx", min_batch=1, opt_batch=2, max_batch=4)
    t = res.metadata["tensorrt"]
    assert t["profile"]["min"] == [1, SIZE, SIZE, 3] and t["profile"]["max"] == [4, SIZE, SIZE, 3]
    assert res.metadata["inputs"][0]["dtype"] == "uint8" and res.metadata["inputs"][0]["layout"] == "NHWC"
    assert read_metadata(res.path)["inputs"][0]["layout"] == "NHWC"
