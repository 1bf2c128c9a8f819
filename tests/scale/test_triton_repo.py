"""clsx triton-repo: every config.pbtxt parses with Triton's own schema and says what the metadata says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from typer.testing import CliRunner

import clsx

from clsx.cli import app
from clsx.core.metadata import dumps, read_metadata, sidecar_path, spec_of
from clsx.scale.triton_repo import TritonRepoError, default_name, parse_config, write_triton_repository

runner = CliRunner()


@pytest.fixture(scope="module")
def schema():
    pytest.importorskip("tritonclient", reason="tritonclient is not installed (pip install 'clsx[triton]'): it ships Triton's model_config_pb2")
    from clsx.scale.triton_repo import model_config_schema

    return model_config_schema()


def _plan(tmp_path: Path, onnx_path: Path, *, name="tiny.plan", flavour="tensorrt", lo=1, hi=16) -> Path:
    """A plan file with the sidecar clsx build writes (the bytes are not an engine: nothing here runs it)."""
    doc = dict(read_metadata(onnx_path))
    c, h, w = doc["inputs"][0]["shape"][1:]
    doc.update(artifact="tensorrt", tensorrt={"flavour": flavour, "version": "10.13.0", "onnx_file": onnx_path.name,
                                              "profile": {"input": "input", "min": [lo, c, h, w], "opt": [8, c, h, w], "max": [hi, c, h, w]}})
    plan = tmp_path / name
    plan.write_bytes(b"not really an engine")
    sidecar_path(plan).write_text(dumps(doc))
    return plan


def _onnx_with_external_data(tmp_path: Path, tiny_onnx: Path) -> Path:
    import onnx

    out = tmp_path / "ext" / "tiny_ext.onnx"
    out.parent.mkdir()
    onnx.save_model(onnx.load(str(tiny_onnx)), str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="tiny_ext.onnx.data", size_threshold=512)
    return out


def test_repository_parses_with_tritons_schema(schema, tmp_path, tiny_onnx):
    plan = _plan(tmp_path, tiny_onnx)
    ext = _onnx_with_external_data(tmp_path, tiny_onnx)
    repo = tmp_path / "repo"
    res = runner.invoke(app, ["triton-repo", str(tiny_onnx), str(plan), str(ext), "-o", str(repo), "--instances", "2",
                              "--name", "tiny_onnx", "--name", "tiny_trt", "--name", "tiny_ext", "--queue-delay-us", "500"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(repo / n) for n in ("tiny_onnx", "tiny_trt", "tiny_ext")]
    doc = read_metadata(tiny_onnx)
    labels = spec_of(doc).labels
    configs = {}
    for folder in sorted(repo.iterdir()):
        cfg = schema.ModelConfig()
        text_format.Parse((folder / "config.pbtxt").read_text(), cfg)  # Triton's own schema
        configs[folder.name] = cfg
        assert cfg.name == folder.name
        (inp,), (out,) = cfg.input, cfg.output
        assert inp.name == doc["inputs"][0]["name"] and list(inp.dims) == doc["inputs"][0]["shape"][1:]
        assert out.name == doc["outputs"][0]["name"] and list(out.dims) == [spec_of(doc).num_classes]
        assert inp.data_type == out.data_type == schema.TYPE_FP32
        assert inp.format == schema.ModelInput.FORMAT_NCHW
        assert out.label_filename == "labels.txt"
        assert (folder / "labels.txt").read_text().splitlines() == list(labels)
        assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds == 500
        assert [(g.count, g.kind) for g in cfg.instance_group][0][0] == 2
        assert json.loads((folder / "clsx.json").read_text())["model"] == doc["model"]  # the preprocessing clients apply
    onnx_cfg, trt_cfg, ext_cfg = configs["tiny_onnx"], configs["tiny_trt"], configs["tiny_ext"]
    assert onnx_cfg.platform == ext_cfg.platform == "onnxruntime_onnx" and trt_cfg.platform == "tensorrt_plan"
    assert trt_cfg.max_batch_size == 16  # the engine profile's maximum
    assert onnx_cfg.max_batch_size == 32  # nothing recorded in the export: the default
    assert trt_cfg.instance_group[0].kind == schema.ModelInstanceGroup.KIND_GPU
    assert onnx_cfg.instance_group[0].kind == schema.ModelInstanceGroup.KIND_AUTO
    assert (repo / "tiny_onnx" / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert (repo / "tiny_trt" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert (repo / "tiny_ext" / "1" / "tiny_ext.onnx.data").read_bytes() == (ext.parent / "tiny_ext.onnx.data").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the staging folder is gone

    # the copied graph still finds its external weights
    x = np.zeros((1, 3, 32, 32), np.float32)
    with clsx.open(repo / "tiny_ext" / "1" / "model.onnx", spec=spec_of(doc)) as served, clsx.open(tiny_onnx) as original:
        np.testing.assert_array_equal(served.run(x), original.run(x))


def test_options_reach_the_config(schema, tmp_path, tiny_onnx):
    plan = _plan(tmp_path, tiny_onnx, hi=64)
    models = write_triton_repository([tiny_onnx, plan], tmp_path / "repo", names=["a", "b"], max_batch=8,
                                     dynamic_batching=False)
    a, b = (parse_config(m.config) for m in models)
    assert a.max_batch_size == b.max_batch_size == 8 and not a.HasField("dynamic_batching")
    cpu = write_triton_repository([tiny_onnx], tmp_path / "repo2", device="cpu")[0]
    assert parse_config(cpu.config).instance_group[0].kind == schema.ModelInstanceGroup.KIND_CPU
    assert cpu.name == default_name(tiny_onnx) == "tiny"
    assert default_name("models/lite0.fp16.onnx") == "lite0_fp16"


def _fixed_batch(tmp_path: Path, tiny_onnx: Path, n: int) -> Path:
    """The tiny graph whose metadata declares a fixed batch of ``n`` (as ``clsx export --batch N`` writes it)."""
    import onnx

    from clsx.core.metadata import embed_in_onnx

    model = onnx.load(str(tiny_onnx))
    doc = dict(read_metadata(tiny_onnx))
    doc["inputs"] = [{**t, "shape": [n, *t["shape"][1:]]} for t in doc["inputs"]]
    doc["outputs"] = [{**t, "shape": [n, *t["shape"][1:]]} for t in doc["outputs"]]
    embed_in_onnx(model, doc)
    out = tmp_path / f"batch{n}.onnx"
    onnx.save(model, str(out))
    return out


def test_fixed_batch_one_serves_single_images(schema, tmp_path, tiny_onnx):
    model = write_triton_repository([_fixed_batch(tmp_path, tiny_onnx, 1)], tmp_path / "repo")[0]
    cfg = parse_config(model.config)
    assert cfg.max_batch_size == 1 and list(cfg.input[0].dims) == [3, 32, 32] and not cfg.HasField("dynamic_batching")
    four = write_triton_repository([_fixed_batch(tmp_path, tiny_onnx, 4)], tmp_path / "repo4")[0]
    cfg = parse_config(four.config)  # served as is: no Triton batching, the batch axis in the dims
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [4, 3, 32, 32] and not cfg.HasField("dynamic_batching")
    with pytest.raises(TritonRepoError, match="fixed batch of 4; Triton cannot batch it further"):
        write_triton_repository([_fixed_batch(tmp_path, tiny_onnx, 4)], tmp_path / "repo8", max_batch=8)


def _cli_error(args: list[str]) -> str:
    res = runner.invoke(app, ["triton-repo", *args])
    assert res.exit_code == 1 and res.stdout == "", res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clsx: error: "), res.stderr
    return lines[0]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_onnx):
    repo = tmp_path / "repo"
    plan = _plan(tmp_path, tiny_onnx)
    assert "duplicate model names in one repository: 'tiny' from" in _cli_error([str(tiny_onnx), str(plan), "-o", str(repo)])
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"engine without sidecar")
    assert "bare.plan: no clsx metadata" in _cli_error([str(bare), "-o", str(repo)])
    rtx = _plan(tmp_path, tiny_onnx, name="rtx.plan", flavour="tensorrt_rtx")
    assert "TensorRT-RTX engine; Triton's tensorrt_plan backend loads standard TensorRT engines only" in _cli_error([str(rtx), "-o", str(repo)])
    lo = _plan(tmp_path, tiny_onnx, name="lo.plan", lo=4)
    assert "starts at batch 4" in _cli_error([str(lo), "-o", str(repo)])
    assert "more than the engine's profile allows (16)" in _cli_error([str(plan), "-o", str(repo), "--max-batch", "32"])
    assert "--device cpu applies to ONNX models only" in _cli_error([str(plan), "-o", str(repo), "--device", "cpu"])
    assert "2 --name values for 1 artifacts" in _cli_error([str(plan), "-o", str(repo), "--name", "a", "--name", "b"])
    assert "model name '../up'" in _cli_error([str(plan), "-o", str(repo), "--name", "../up"])
    assert "serves .onnx graphs" in _cli_error([str(sidecar_path(plan)), "-o", str(repo)])
    assert not repo.exists()  # every check runs before anything is written

    assert runner.invoke(app, ["triton-repo", str(tiny_onnx), "-o", str(repo)]).exit_code == 0
    before = (repo / "tiny" / "config.pbtxt").read_text()
    assert "model folder(s) tiny exist; pass --force" in _cli_error([str(plan), "-o", str(repo)])
    res = runner.invoke(app, ["triton-repo", str(plan), "-o", str(repo), "--force", "--json"])
    assert res.exit_code == 0, res.output
    (entry,) = json.loads(res.stdout)
    assert entry["name"] == "tiny" and entry["platform"] == "tensorrt_plan" and entry["max_batch_size"] == 16
    assert (repo / "tiny" / "config.pbtxt").read_text() != before and not (repo / "tiny" / "1" / "model.onnx").exists()


def test_repository_in_missing_folders(tmp_path, tiny_onnx):
    repo = tmp_path / "a" / "b" / "repo"
    res = runner.invoke(app, ["triton-repo", str(tiny_onnx), "-o", f"{repo}/"])
    assert res.exit_code == 0, res.output
    assert (repo / "tiny" / "config.pbtxt").is_file()
    (tmp_path / "afile").write_text("")
    assert "afile is not a folder" in _cli_error([str(tiny_onnx), "-o", str(tmp_path / "afile" / "repo")])
