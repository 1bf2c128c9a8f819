"""What any ONNX graph says about itself: the one reader of graphs clsx did not make.

A graph from timm's ``onnx_export``, a plain ``torch.onnx.export``, a colleague or a model zoo carries
no clsx document, but its signature says most of what clsx needs to feed it: the image input's name,
element type, axis order and batch axis, the logits' name and the class count, and the external data
files it keeps its weights in. :func:`read_graph_io` reads that (through
:func:`clsx.core.artifact.load_checked_onnx`: external data stays inside the graph's folder), and
:func:`graph_document` turns it into a *partial* metadata document whose ``model.preprocess`` is
``null``: what the graph cannot say (resize, crop, mean, std, channel order, labels) comes from the
user (flags, ``--preset``) or from ``clsx annotate``.

Layout rules (general, never keyed to a particular exporter): a 4-D input whose axis 1 is 1 or 3 and
whose axis 3 is not is NCHW; axis 3 is 1 or 3 and axis 1 is not: NHWC; a dynamic channel axis counts
as "not" when the other is 1 or 3. Anything else (3 on both, 4 channels, rank 3 ...) is one line naming
what was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clsx.core.artifact import load_checked_onnx
from clsx.core.errors import ClsxError
from clsx.core.spec import INPUT_DTYPES, MAX_NUM_CLASSES, InputFormat

#: ONNX TensorProto element types -> numpy names (those an image input or logits may have).
_ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
               11: "float64", 16: "bfloat16"}

Dim = int | str  # a fixed size, or the name of a dynamic axis ("?" when unnamed)


class GraphInputError(ClsxError):
    """A graph whose image input clsx cannot feed (rank, channels, dtype, several inputs)."""


@dataclass(frozen=True)
class GraphIO:
    """A graph's signature as clsx reads it (:func:`read_graph_io`)."""

    path: Path
    input_name: str
    input_shape: tuple[Dim, ...]
    input_dtype: str
    layout: str  # "NCHW" | "NHWC"
    output_name: str
    output_shape: tuple[Dim, ...]
    output_dtype: str
    external: tuple[Path, ...] = ()
    producer: str = ""
    opset: int | None = None
    has_qdq: bool = False
    has_fp16: bool = False

    @property
    def format(self) -> InputFormat:
        return InputFormat(dtype=self.input_dtype, layout=self.layout)

    @property
    def batch(self) -> int | None:
        """The fixed batch size, or None when the batch axis is dynamic."""
        b = self.input_shape[0]
        return b if isinstance(b, int) and b > 0 else None

    @property
    def chw(self) -> tuple[Dim, Dim, Dim]:
        """(C, H, W) of one image, ints where the graph fixes them."""
        return self.format.chw(tuple(self.input_shape[1:]))  # type: ignore[return-value]

    @property
    def input_size(self) -> tuple[int, int, int] | None:
        """(C, H, W) when the graph fixes H and W; None when they are dynamic."""
        c, h, w = self.chw
        return (int(c), h, w) if isinstance(h, int) and isinstance(w, int) and isinstance(c, int) else None

    @property
    def num_classes(self) -> int | None:
        """The logits' last axis when it is fixed (and plausible), else None."""
        last = self.output_shape[-1] if self.output_shape else None
        return last if isinstance(last, int) and 1 <= last <= MAX_NUM_CLASSES else None

    @property
    def precision(self) -> str:
        return "int8" if self.has_qdq else "fp16" if self.has_fp16 else "fp32"

    def batch_text(self) -> str:
        return f"fixed {self.batch}" if self.batch is not None else f"dynamic ({self.input_shape[0]})"

    def inputs(self) -> list[dict[str, Any]]:
        """``inputs`` of a metadata document (layout written when it is not NCHW)."""
        entry: dict[str, Any] = {"name": self.input_name, "shape": list(self.input_shape), "dtype": self.input_dtype}
        if self.layout != "NCHW":
            entry["layout"] = self.layout
        return [entry]

    def outputs(self) -> list[dict[str, Any]]:
        return [{"name": self.output_name, "shape": list(self.output_shape), "dtype": self.output_dtype}]


def _dims(value: Any) -> tuple[Dim, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def _dtype(value: Any) -> str:
    t = value.type.tensor_type.elem_type
    return _ELEM_TYPES.get(t, f"onnx type {t}")


def shape_text(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def layout_of(shape: tuple[Dim, ...], *, where: str, name: str) -> str:
    """NCHW or NHWC from a 4-D image input's shape (see the module docstring); one line otherwise."""
    found = f"{where}: input {name!r} has shape {shape_text(shape)}"
    if len(shape) != 4:
        raise GraphInputError(f"{found}; clsx feeds 4-D image batches (NCHW or NHWC)")
    ch1 = isinstance(shape[1], int) and shape[1] in (1, 3)
    ch3 = isinstance(shape[3], int) and shape[3] in (1, 3)
    if ch1 and not ch3:
        return "NCHW"
    if ch3 and not ch1:
        return "NHWC"
    why = "both axis 1 and axis 3 could be the channels" if ch1 and ch3 else "neither axis 1 nor axis 3 is 1 or 3 channels"
    raise GraphInputError(f"{found}: {why}, so its layout is unknown; clsx feeds NCHW or NHWC images with 1 or 3 channels")


def read_graph_io(path: str | Path) -> GraphIO:
    """Read ``path``'s signature (external weights checked, not loaded). One :class:`ClsxError` line for
    a graph clsx cannot feed: several image inputs, no output, an input of another rank, layout or dtype."""
    model, external = load_checked_onnx(path)
    p = Path(path)
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(repr(v.name) for v in inputs) or "none"
        raise GraphInputError(f"{p}: a classifier graph has one image input; this one has {len(inputs)} ({names})")
    if not model.graph.output:
        raise GraphInputError(f"{p}: the graph has no output")
    inp, out = inputs[0], model.graph.output[0]
    shape = _dims(inp)
    layout = layout_of(shape, where=str(p), name=inp.name)
    dtype = _dtype(inp)
    if dtype not in INPUT_DTYPES:
        raise GraphInputError(f"{p}: input {inp.name!r} is {dtype} {shape_text(shape)}; clsx feeds images as "
                              f"{', '.join(INPUT_DTYPES)}")
    out_shape = _dims(out)
    if len(out_shape) != 2:
        raise GraphInputError(f"{p}: output {out.name!r} has shape {shape_text(out_shape)}; clsx reads logits of "
                              "shape [batch, classes]")
    ops = {n.op_type for n in model.graph.node}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    fp16 = sum(1 for t in model.graph.initializer if t.data_type == 10) > len(model.graph.initializer) // 2
    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x)
    return GraphIO(path=p, input_name=inp.name, input_shape=shape, input_dtype=dtype, layout=layout,
                   output_name=out.name, output_shape=out_shape, output_dtype=_dtype(out), external=tuple(external),
                   producer=producer, opset=opset, has_qdq=bool(ops & {"QuantizeLinear", "DequantizeLinear"}),
                   has_fp16=fp16)


#: ``model.source`` of a document made from a graph alone.
GRAPH_SOURCE = "onnx"


def graph_document(io: GraphIO, *, num_classes: int | None = None) -> dict[str, Any]:
    """A partial metadata document for a graph without one: inputs, outputs, class count and precision
    from the graph; ``model.preprocess`` (and labels) ``null``: not known until the user says."""
    from clsx import __version__

    doc_model: dict[str, Any] = {"name": io.path.stem, "source": GRAPH_SOURCE, "ref": io.path.stem,
                                 "num_classes": num_classes or io.num_classes, "weights": f"graph:{io.path.name}",
                                 "preprocess": None, "labels": None}
    producer: dict[str, Any] = {"name": io.producer or "unknown", "read_from_graph": True,
                                "batch": {"dynamic": io.batch is None, "size": io.batch}}
    if io.opset is not None:
        producer["opset"] = io.opset
    return {"schema_version": 1, "clsx_version": __version__, "artifact": "onnx", "precision": io.precision,
            "model": doc_model, "inputs": io.inputs(), "outputs": io.outputs(), "parent_sha256": None,
            "producer": producer}
