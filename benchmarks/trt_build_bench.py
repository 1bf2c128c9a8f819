"""Engine build time: resnet50 FP32 / FP16 / INT8 Q/DQ through `clsx.exporter.engine.build_engine`.

Builds each precision with the TensorRT flavour installed (tensorrt_rtx on a CPU-only machine),
with the default targets and with one target, and with a timing cache where the flavour has one
(standard TensorRT; TensorRT-RTX has none). Writes a markdown table with the machine and the command.

    nice -n 10 python benchmarks/trt_build_bench.py --out benchmarks/results/trt_build_resnet50.md

Graphs: torchvision resnet50 (random weights: build time does not depend on them) exported with
clsx's exporter when it is present, else torch.onnx.export; FP16 = onnxconverter-common with FP32 I/O;
INT8 = ONNX Runtime quantize_static with the TensorRT-friendly settings, calibrated on the sample photos.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def make_graphs(model: str, size: int, folder: Path) -> tuple[dict[str, Path], str]:
    import onnx
    import torch

    from clsx import zoo
    from clsx.core.metadata import embed_in_onnx, make_document

    loaded = zoo.build(model)
    spec = loaded.spec
    fp32 = folder / f"{spec.name}.onnx"
    exported = False
    try:
        from clsx.exporter import export_onnx  # the project's exporter, once it exists

        export_onnx(loaded, fp32)
        exported = True
    except ImportError:
        pass
    if not exported:
        c = spec.preprocess.input_size[0]
        torch.onnx.export(loaded.module.eval(), torch.randn(2, c, size, size), str(fp32), dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)

    def embed(path: Path, precision: str) -> None:
        m = onnx.load(str(path))
        if any(p.key == "clsx" for p in m.metadata_props) and precision == "fp32":
            return
        doc = make_document(spec, artifact="onnx", precision=precision,
                            inputs=[{"name": "input", "shape": ["batch", 3, size, size], "dtype": "float32"}],
                            outputs=[{"name": "logits", "shape": ["batch", spec.num_classes], "dtype": "float32"}],
                            producer={"exporter": "benchmarks/trt_build_bench.py"})
        embed_in_onnx(m, doc)
        onnx.save_model(m, str(path))

    embed(fp32, "fp32")

    from onnxconverter_common import float16

    fp16 = folder / f"{spec.name}.fp16.onnx"
    onnx.save_model(float16.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(fp16))
    embed(fp16, "fp16")

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from clsx.zoo import samples
    from clsx.core.preprocess import preprocess_batch

    photos = samples.photo_paths()[:8]
    batch = preprocess_batch(photos, spec.preprocess).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"input": batch[i:i + 2]} for i in range(0, len(batch), 2)])

        def get_next(self):
            return next(self._it, None)

    pre = folder / "pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    int8 = folder / f"{spec.name}.int8.onnx"
    quantize_static(str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "DedicatedQDQPair": True, "QuantizeBias": False})
    embed(int8, "int8")
    exporter = "clsx.exporter.export_onnx" if exported else "torch.onnx.export(dynamo=False)"
    return {"fp32": fp32, "fp16": fp16, "int8": int8}, exporter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--target", default="auto")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/trt_build_resnet50.md"))
    args = ap.parse_args()

    from clsx.runtimes import trt_lib as _trt
    from clsx.exporter.engine import build_engine

    flavour = _trt.flavour_for_target(args.target)
    version = _trt.installed_version(flavour)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        graphs, exporter = make_graphs(args.model, args.size, folder)
        print(f"graphs ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if flavour == "tensorrt_rtx":
            variants = [("default targets (sm80-sm121)", {}), ("one target (sm89)", {"compute_capabilities": ["sm89"]})]
        else:
            variants = [("no timing cache", {}), ("timing cache, cold (new file)", {"timing_cache": "cold"}),
                        ("timing cache, warm (reused)", {"timing_cache": "warm"})]
        for precision, onnx_path in graphs.items():
            for label, opts in variants:
                times, wall, size = [], [], 0
                warm = folder / f"warm-{precision}.cache"
                if opts.get("timing_cache") == "warm":  # fill the cache once, untimed
                    build_engine(onnx_path, folder / "bench.plan", target=flavour, force=True, timing_cache=warm)
                for r in range(args.repeats):
                    kw = dict(opts)
                    if kw.get("timing_cache") == "cold":
                        kw["timing_cache"] = folder / f"cold-{precision}-{r}.cache"
                    elif kw.get("timing_cache") == "warm":
                        kw["timing_cache"] = warm
                    start = time.perf_counter()
                    res = build_engine(onnx_path, folder / "bench.plan", target=flavour, force=True, **kw)
                    wall.append(time.perf_counter() - start)
                    times.append(res.seconds)
                    size = res.metadata["tensorrt"]["plan_bytes"]
                rows.append({"precision": precision, "variant": label, "build_s": statistics.median(times),
                             "wall_s": statistics.median(wall), "min_build_s": min(times), "plan_mb": size / 1e6,
                             "onnx_mb": onnx_path.stat().st_size / 1e6})
                print(json.dumps(rows[-1]), file=sys.stderr)

    cache_note = ("TensorRT-RTX has no timing cache (its timing-cache API is a no-op since 1.2 and would force a GPU "
                  "query), so there is no with/without-cache comparison for it. Its build is the ahead-of-time half of the "
                  "compile: TensorRT-RTX JIT-compiles kernels for the actual GPU when the engine is first run (its "
                  "runtime cache keeps those), which these figures do not include." if flavour == "tensorrt_rtx" else "")
    lines = [
        f"# Engine build time: {args.model} FP32 / FP16 / INT8 with {flavour} {version}",
        "",
        f"- machine: {machine()}",
        f"- command: `nice -n 10 python benchmarks/trt_build_bench.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- graphs: {args.model} (random weights) at {args.size}x{args.size} exported with {exporter}; FP16 by "
        "onnxconverter-common (FP32 I/O); INT8 Q/DQ by ONNX Runtime quantize_static (MinMax, 8 sample photos)",
        "- engine: dynamic batch profile 1/8/32, builder optimization level default (3)",
        f"- build_s = TensorRT's build_serialized_network (median of {args.repeats}); wall_s = the whole "
        "build_engine call (checks, parse, build, sidecar, write)",
        "- target: <= 30 s per engine",
        "",
        "| precision | variant | build_s (median) | build_s (min) | wall_s | plan MB | ONNX MB | <= 30 s |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = "yes" if r["wall_s"] <= 30 else "**no**"
        lines.append(f"| {r['precision']} | {r['variant']} | {r['build_s']:.2f} | {r['min_build_s']:.2f} | "
                     f"{r['wall_s']:.2f} | {r['plan_mb']:.1f} | {r['onnx_mb']:.1f} | {ok} |")
    if cache_note:
        lines += ["", cache_note]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
