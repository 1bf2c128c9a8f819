"""``clsx annotate``: write the clsx document into a graph clsx did not make, once.

The document is what the graph says (:mod:`clsx.core.graph_io`) completed by a preset and/or flags
(:mod:`clsx.runtimes.foreign`), checked against the graph by the one validator
(:func:`clsx.core.metadata.check_document`) before anything is written. It goes into a new ONNX file
(default ``<stem>.clsx.onnx`` beside the graph) or, with ``sidecar``, into ``<graph>.json`` beside the
graph, which stays untouched. Afterwards every command runs the graph without flags.

External weights: a new graph in the same folder names the same data file(s); in another folder the
data files are copied beside it (same names), published together with the graph.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from clsx.core.artifact import checked_onnx
from clsx.core.errors import ClsxError
from clsx.core.files import OutputSet, output_path, refuse_existing, check_writable
from clsx.core.metadata import check_document, dumps, embed_in_onnx, is_partial, read_metadata_or_graph, sidecar_path
from clsx.core.spec import PreprocessOverrides
from clsx.core.graph_io import read_graph_io
from clsx.runtimes.foreign import completed_document, spec_for_graph

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotateResult:
    path: Path  # the file now carrying the document (the new graph, or the sidecar)
    metadata: dict[str, Any]


def default_output(graph: Path) -> Path:
    stem = graph.name[: -len(".onnx")] if graph.name.lower().endswith(".onnx") else graph.name
    return graph.with_name(f"{stem}.clsx.onnx")


def annotated_document(graph: Path, *, preset: str | None = None,
                       preprocess: PreprocessOverrides | Mapping[str, Any] | None = None,
                       labels: str | Path | None = None) -> dict[str, Any]:
    """The full document for ``graph`` (which must have none), checked against the graph."""
    doc = read_metadata_or_graph(graph)
    if not is_partial(doc):
        raise ClsxError(f"{graph} already carries clsx metadata (clsx info {graph} shows it); nothing to annotate")
    spec = spec_for_graph(doc, where=str(graph), preset=preset, overrides=preprocess, labels=labels)
    full = completed_document(doc, spec, preset=preset)
    io = read_graph_io(graph)
    return check_document(full, where=str(graph), graph_input=io.input_shape)


def annotate(graph: str | Path, out: str | Path | None = None, *, sidecar: bool = False, preset: str | None = None,
             preprocess: PreprocessOverrides | Mapping[str, Any] | None = None, labels: str | Path | None = None,
             force: bool = False) -> AnnotateResult:
    """Write ``graph``'s clsx document: into ``out`` (a new ONNX file, or a folder for
    ``<stem>.clsx.onnx``; default beside the graph) or, with ``sidecar``, into ``<graph>.json``."""
    graph = Path(graph)
    if sidecar and out is not None:
        raise ClsxError("give -o/--output (a new graph) or --sidecar (beside this one), not both")
    external = checked_onnx(graph)
    doc = annotated_document(graph, preset=preset, preprocess=preprocess, labels=labels)
    if sidecar:
        target = sidecar_path(graph)
        refuse_existing([target], force=force)
        with OutputSet([target], force=force) as files:
            files.write_text(target, dumps(doc))
        log.info("wrote %s: %s now runs without flags", target, graph.name)
        return AnnotateResult(target, doc)
    target = output_path(out, default_output(graph).name) if out is not None else default_output(graph)
    if target.resolve() == graph.resolve():
        raise ClsxError(f"{target} is the graph itself; write a new file (-o) or a sidecar (--sidecar)")
    same_folder = target.parent.resolve() == graph.parent.resolve()
    copies = [] if same_folder else [(f, target.parent / f.relative_to(graph.parent)) for f in external]
    refuse_existing([target, *(dst for _, dst in copies)], force=force)
    check_writable(target)
    _write_graph(graph, target, doc, copies, force=force)
    log.info("wrote %s%s", target, f" (and its external data: {', '.join(d.name for _, d in copies)})" if copies else "")
    return AnnotateResult(target, doc)


def _write_graph(graph: Path, target: Path, doc: Mapping[str, Any], copies: list[tuple[Path, Path]], *, force: bool) -> None:
    import onnx

    model = onnx.load(str(graph), load_external_data=False)  # the weights stay where they are (or are copied)
    embed_in_onnx(model, doc)
    with OutputSet([target, *(dst for _, dst in copies)], force=force) as files:
        files.write_bytes(target, model.SerializeToString())
        for src, dst in copies:
            with open(src, "rb") as fin, open(files.temp(dst), "wb") as fout:
                shutil.copyfileobj(fin, fout)
