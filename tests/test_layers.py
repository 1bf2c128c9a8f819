"""The package's layers: imports go one way, and no two modules import each other (even inside functions).

core -> zoo -> runtimes -> predict -> calib -> exporter -> tools / scale -> cli

Every ``import`` statement of every module counts, wherever it stands (module level, inside a
function, under ``TYPE_CHECKING``): a cycle held together by a function-level import is still a
cycle. ``clsx`` itself (``__version__`` and the lazy public API) may be imported from anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import clsx

PACKAGE = Path(clsx.__file__).parent
LAYERS = {
    "core": 0,
    "zoo": 1,
    "runtimes": 2,
    "predict": 3,
    "calib": 4,  # below exporter: the export chain composes export, calibration and the engine build
    "exporter": 5,
    "tools": 6,
    "scale": 6,
    "cli": 7,
    "__main__": 7,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """clsx modules that ``path`` imports (a ``from pkg import name`` counts ``pkg.name`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "clsx")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "clsx":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:  # the root package: the lazy API, imports nothing at import time
        return None
    return LAYERS[parts[1]]


def test_every_module_has_a_layer():
    unknown = sorted(m for m in MODULES if m != "clsx" and m.split(".")[1] not in LAYERS)
    assert not unknown, f"modules outside any layer (add their folder to LAYERS): {unknown}"


def test_imports_never_go_up_a_layer():
    bad = []
    for module, deps in GRAPH.items():
        mine = layer_of(module)
        if mine is None:
            continue
        for dep in deps:
            theirs = layer_of(dep)
            if theirs is not None and theirs > mine:
                bad.append(f"{module} (layer {mine}) imports {dep} (layer {theirs})")
    assert not bad, "imports that go up a layer:\n" + "\n".join(sorted(bad))


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "modules that import each other (directly or around a loop): " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["clsx.core.files", "clsx.predict.pipeline", "clsx.cli"])
def test_the_checker_sees_imports(module):
    """The test above can fail: the graph holds the imports these modules certainly have."""
    assert GRAPH[module], f"no clsx imports found in {module}"
    assert "clsx.core.errors" in GRAPH["clsx.core.files"]
