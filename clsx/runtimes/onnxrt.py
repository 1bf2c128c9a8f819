"""The onnxrt backend: ONNX Runtime with the CPU, CUDA or TensorRT execution provider.

``device`` picks the providers: ``cpu``; ``cuda[:N]`` (CUDA, then CPU for unsupported nodes);
``tensorrt[:N]`` (ORT's TensorRT provider, then CUDA, then CPU); ``auto`` = CUDA when this
onnxruntime build offers it, else CPU. onnxruntime-gpu silently falls back to CPU when a GPU
provider cannot load (no GPU, missing CUDA libraries), so after creating the session clsx compares
``session.get_providers()`` with what was asked, warns on a fallback, and :meth:`describe` reports the
providers that actually loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from clsx.core.files import first_line
from clsx.core.optional import require
from clsx.core.machine import cpu_cores
from clsx.runtimes.base import DeviceError, Runtime, TensorInfo, io_from_document
from clsx.core.spec import ModelSpec, PreprocessOverrides

log = logging.getLogger(__name__)

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(bfloat16)": "bfloat16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


class OnnxRuntime(Runtime):
    """An ``onnxruntime.InferenceSession`` over one ``.onnx`` file (external data beside it is found)."""

    backend = "onnxrt"

    def __init__(
        self,
        target: str | Path,
        *,
        device: str | None = None,
        threads: int | None = None,
        spin: bool | None = None,
        providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
        trt_cache_dir: str | Path | None = None,
        spec: ModelSpec | None = None,
        preprocess: PreprocessOverrides | Mapping[str, Any] | None = None,
        labels: str | Path | None = None,
        preset: str | None = None,
    ) -> None:
        super().__init__(Path(target), device=device, spec=spec, preprocess=preprocess, labels=labels, preset=preset)
        self.threads = threads
        self.spin = spin
        self._providers_given = list(providers) if providers is not None else None
        self._trt_cache_dir = trt_cache_dir
        self._doc: dict[str, Any] | None = None
        self._session: Any = None
        self._requested: list[str] = []
        self._in_name = ""
        self._out_name = ""
        self._in_dtype: Any = np.float32
        self._graph_input: tuple[Any, ...] | None = None  # the graph's input shape, once read

    # -- metadata (cheap, no session) ------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The clsx metadata document inside the ONNX file (or its sidecar); for a graph clsx did not
        make, the partial document its signature gives (:func:`clsx.core.metadata.read_metadata_or_graph`)."""
        if self._doc is None:
            from clsx.core.metadata import read_metadata_or_graph

            self._doc = read_metadata_or_graph(self.target)
        return self._doc

    def load_spec(self) -> ModelSpec:
        return self.document_spec(self.metadata())

    def check_spec(self, spec: ModelSpec, base: ModelSpec) -> None:
        """The spec's (C, H, W) against the graph's input (static dims), so 12000 px on a 224 px graph
        fails here, in one line, before an image is decoded at that size."""
        from clsx.core.metadata import check_graph_input, onnx_input_shape_of

        size = spec.preprocess.input_size
        from_metadata = self._spec_given is None and size == base.preprocess.input_size
        if from_metadata and self._graph_input is None:
            return  # read_metadata checked the document against the graph already
        if self._graph_input is None:
            self._graph_input = onnx_input_shape_of(self.target)
        says = ("metadata says" if from_metadata else "the given spec says" if size == base.preprocess.input_size
                else "the preprocessing overrides give")
        check_graph_input(size, self._graph_input, where=str(self.target), says=says, layout=self.input_format.layout)

    def io_impl(self) -> tuple[list[TensorInfo], list[TensorInfo]]:
        if self._session is None:
            from clsx.core.metadata import MetadataError

            try:
                doc_io = io_from_document(self.metadata())
                if doc_io[0] and doc_io[1]:
                    return doc_io
            except MetadataError:
                pass
            self.activate()
        return (
            [_info(a, self._layouts().get(a.name)) for a in self._session.get_inputs()],
            [_info(a) for a in self._session.get_outputs()],
        )

    def _layouts(self) -> dict[str, str | None]:
        """Input name -> layout, as the document (or the graph itself) says; the session does not."""
        from clsx.core.metadata import MetadataError

        try:
            return {t.name: t.layout for t in io_from_document(self.metadata())[0]}
        except MetadataError:
            return {}

    # -- session ---------------------------------------------------------------------------------

    def providers_for_device(self, available: Sequence[str]) -> list[str | tuple[str, dict[str, Any]]]:
        """The provider list for ``self.device`` (checked against what this onnxruntime build offers)."""
        if self._providers_given is not None:
            return list(self._providers_given)
        kind, idx = self.device.kind, self.device.index
        if kind == "auto":
            kind = "cuda" if CUDA in available else "cpu"
        if kind == "cpu":
            return [CPU]
        wanted = [TRT, CUDA] if kind == "tensorrt" else [CUDA]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise DeviceError(
                f"device {self.device} needs {', '.join(missing)}, which this onnxruntime does not offer "
                f"(available: {', '.join(available)}). Install onnxruntime-gpu instead of onnxruntime: "
                "pip uninstall onnxruntime && pip install 'clsx[onnxruntime-gpu]'"
            )
        chain: list[str | tuple[str, dict[str, Any]]] = []
        if kind == "tensorrt":
            trt_opts: dict[str, Any] = {"device_id": idx}
            if self._trt_cache_dir is not None:
                trt_opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(self._trt_cache_dir))
            chain.append((TRT, trt_opts))
        chain.append((CUDA, {"device_id": idx}))
        chain.append(CPU)
        return chain

    def share_cores(self) -> None:
        """Decode threads share the cores (``clsx infer``, :class:`~clsx.predict.classifier.Classifier`):
        intra-op threads do not spin (``session.intra_op.allow_spinning`` 0) unless ``spin=`` was given.
        Measured in ``benchmarks/results/pipeline_bench.md``: spinning threads take cycles the decoders need."""
        if self.spin is None and not self.is_active:
            self.spin = False

    def session_options(self, ort: Any) -> Any:
        """Throughput settings for CPU: one intra-op thread per core, sequential graph execution."""
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.threads or cpu_cores()
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # errors only; clsx reports provider fallbacks itself
        if self.spin is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        return so

    def activate_impl(self) -> None:
        from clsx.core.artifact import checked_onnx

        checked_onnx(self.target)  # external data inside the graph's folder, before ONNX Runtime opens anything
        ort = require("onnxruntime", purpose="running .onnx files")
        chain = self.providers_for_device(ort.get_available_providers())
        self._requested = [p if isinstance(p, str) else p[0] for p in chain]
        try:
            session = ort.InferenceSession(str(self.target), sess_options=self.session_options(ort), providers=chain)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            from clsx.core.errors import ClsxError

            raise ClsxError(f"{self.target}: ONNX Runtime cannot load it ({type(exc).__name__}: {first_line(exc)})") from None
        loaded = session.get_providers()
        dropped = [p for p in self._requested if p not in loaded and p != CPU]
        if dropped:
            log.warning(
                "ONNX Runtime could not load %s and fell back to %s (check the GPU, CUDA/cuDNN/TensorRT libraries)",
                ", ".join(dropped),
                ", ".join(loaded),
            )
        if loaded == [CPU]:
            self._warn_if_tensorrt_int8_layout()
        self._graph_input = _info(session.get_inputs()[0]).shape
        self._check_spec_at_activation()
        self._session = session
        inp, out = session.get_inputs()[0], session.get_outputs()[0]
        self._in_name, self._out_name = inp.name, out.name
        self._in_dtype = {"tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(uint8)": np.uint8}.get(inp.type, np.float32)

    def _check_spec_at_activation(self) -> None:
        """A spec that disagrees with the graph fails activation too; missing or unreadable metadata
        does not (run() takes tensors; ``.spec`` says what is wrong when it is asked for)."""
        from clsx.core.errors import ClsxError
        from clsx.core.metadata import InputSizeMismatchError, check_graph_input

        if self._spec is not None:  # resolved before the session existed: checked against the session now
            check_graph_input(self._spec.preprocess.input_size, self._graph_input, where=str(self.target), says="the spec says",
                              layout=self.input_format.layout)
            return
        try:
            self.spec  # noqa: B018  resolving it runs check_spec against the session's input
        except InputSizeMismatchError:
            raise
        except ClsxError:  # no metadata, a bad document or labels file: reported by .spec when used
            pass

    def _warn_if_tensorrt_int8_layout(self) -> None:
        """The default INT8 layout is TensorRT's; ONNX Runtime's CPU kernels cannot fuse it (see clsx.calib.quantize)."""
        from clsx.core.metadata import MetadataError

        try:
            calibration = self.metadata().get("calibration") or {}
        except (MetadataError, OSError):
            return
        if calibration.get("target") == "tensorrt":
            log.warning("%s is INT8 laid out for TensorRT: ONNX Runtime's CPU provider runs it slower than FP32; "
                        "for CPU deployment calibrate with `clsx calib --for cpu`", self.target.name)

    def deactivate_impl(self) -> None:
        self._session = None

    @property
    def providers(self) -> list[str]:
        """Execution providers that actually loaded (activates the session)."""
        self.activate()
        return list(self._session.get_providers())

    def batch_bounds(self) -> tuple[int, int | None]:
        dim = self._session.get_inputs()[0].shape[0] if self._session is not None else None
        return (dim, dim) if isinstance(dim, int) and dim > 0 else (1, None)

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != self._in_dtype:
            batch = batch.astype(self._in_dtype)
        return self._session.run([self._out_name], {self._in_name: batch})[0]

    def describe_impl(self) -> str:
        ort = require("onnxruntime", purpose="the onnxrt backend")

        loaded = self._session.get_providers()
        note = ""
        dropped = [p for p in self._requested if p not in loaded and p != CPU]
        if dropped:
            note = f" (requested {', '.join(dropped)}: did not load)"
        threads = self.threads or cpu_cores()
        spin = " (not spinning)" if self.spin is False else ""
        return f"onnxruntime {ort.__version__}, {self.target.name}, providers {', '.join(loaded)}{note}, {threads} intra-op threads{spin}"


def _info(arg: Any, layout: str | None = None) -> TensorInfo:
    shape = tuple(d if isinstance(d, (int, str)) else "?" for d in (arg.shape or ()))
    return TensorInfo(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type), layout)
