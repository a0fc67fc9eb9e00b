"""The import graph: layers only import downwards, the serving core never imports the tools, no cycles.

Layers, top to bottom (README > How it works)::

    fathom.training -> fathom.benchmarks -> fathom.service -> fathom.ingest -> fathom.retrieval -> fathom.config

A module may import its own layer and the layers below it, never one above: so serving code
(retrieval, ingest, service, config) never imports benchmarks or training. ``fathom.config`` imports
nothing of Fathom. No two modules import each other, directly or through others. Every import
statement counts, including the ones inside functions and under ``TYPE_CHECKING``: an arrow drawn
lazily is still an arrow. The graph is grimp's (the engine of import-linter), built from the source
``fathom`` resolves to (the checkout when run from it).
"""

from __future__ import annotations

import sys

import pytest

grimp = pytest.importorskip("grimp", reason="grimp is a dev dependency (pip install -e .[dev])")

LAYERS = ("fathom.training", "fathom.benchmarks", "fathom.service", "fathom.ingest", "fathom.retrieval", "fathom.config")
SERVING = ("fathom.config", "fathom.retrieval", "fathom.ingest", "fathom.service")
TOOLS = ("fathom.benchmarks", "fathom.training")


@pytest.fixture(scope="module")
def graph():  # type: ignore[no-untyped-def]
    return grimp.build_graph("fathom", cache_dir=None)


def _layer(module: str) -> str | None:
    return next((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), None)


def upward_imports(graph) -> list[str]:  # type: ignore[no-untyped-def]
    """Every direct import from a module to one in a higher layer (with the line that makes it)."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    found = []
    for importer in sorted(graph.modules):
        low = _layer(importer)
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            high = _layer(imported)
            if low is not None and high is not None and rank[high] < rank[low]:
                lines = sorted({d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)})
                found.append(f"{importer} -> {imported} (line {', '.join(map(str, lines))})")
    return found


def cycles(graph) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """Strongly connected components of more than one module (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return out


def test_the_graph_covers_every_layer(graph) -> None:  # type: ignore[no-untyped-def]
    assert all(any(m == layer or m.startswith(layer + ".") for m in graph.modules) for layer in LAYERS)
    unplaced = sorted(m for m in graph.modules if _layer(m) is None and m != "fathom")
    assert unplaced == [], f"modules outside every layer: {unplaced}"


def test_no_layer_imports_a_higher_one(graph) -> None:  # type: ignore[no-untyped-def]
    assert upward_imports(graph) == []


def test_serving_code_never_imports_the_tools(graph) -> None:  # type: ignore[no-untyped-def]
    chains = [f"{s} -> {t}" for s in SERVING for t in TOOLS if graph.chain_exists(importer=s, imported=t, as_packages=True)]
    assert chains == []


def test_config_imports_nothing_of_fathom(graph) -> None:  # type: ignore[no-untyped-def]
    assert graph.find_modules_directly_imported_by("fathom.config") == set()


def test_no_import_cycles(graph) -> None:  # type: ignore[no-untyped-def]
    assert cycles(graph) == []
