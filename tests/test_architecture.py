"""The house rules a machine can check beyond `lint-imports`: no import cycle, short runtime
modules, a tidy top level (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
#: Over this many lines a runtime module is split along its seams.
MAX_MODULE_LINES = 450


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Groups of modules that import each other (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                found.append(sorted([module, *group]))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_in_jes() -> None:
    graph = grimp.build_graph("jes", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(module)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.c", imported="a.d")
    assert _cycles(graph) == [["a.b", "a.c"]]


def test_no_runtime_module_is_longer_than_the_limit() -> None:
    runtime = list((REPO / "jes").rglob("*.py"))  # devtools ship too
    long = {str(p.relative_to(REPO)): n for p in runtime if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_top_of_jes_holds_only_the_shared_modules_and_packages() -> None:
    allowed = {"__init__.py", "__main__.py", "cli.py", "models.py", "settings.py", "errors.py", "py.typed"}
    entries = {p.name for p in (REPO / "jes").iterdir() if p.name != "__pycache__"}
    packages = {name for name in entries if (REPO / "jes" / name / "__init__.py").exists()}
    assert entries - packages <= allowed
