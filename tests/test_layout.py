"""The package layout: packages import downward only, and nothing imports in a circle.

Walks every module of ``ctxlab`` with `ast` (imports under ``if TYPE_CHECKING:`` are left out:
they never run) and checks each import against the layer table below, which is the same
picture as the README's "How the code is laid out".
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "ctxlab"

# The core values at the package root. They import one another and nothing above.
CORE = {
    "ctxlab",  # the root __init__ imports only core values; its heavy names are lazy
    "ctxlab._config",
    "ctxlab.budget",
    "ctxlab.errors",
    "ctxlab.invariants",
    "ctxlab.keys",
    "ctxlab.messages",
    "ctxlab.pruned",
    "ctxlab.tokens",
    "ctxlab.usage",
}
ENTRY = {"ctxlab.__main__", "ctxlab.cli", "ctxlab.commands"}

# unit -> the units it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "formats": {"core"},
    "scoring": {"core"},
    "datasets": {"core", "formats"},
    "providers": {"core", "formats"},
    "summarizers": {"core", "formats", "scoring", "providers"},
    "strategies": {"core", "formats", "scoring", "summarizers", "providers"},
    "lab": {"core", "formats", "scoring", "summarizers", "providers", "strategies", "datasets"},
    "live": {"core", "formats", "summarizers", "providers", "strategies"},
    "widgets": {
        "core",
        "formats",
        "scoring",
        "summarizers",
        "providers",
        "strategies",
        "datasets",
        "lab",
    },
    "entry": {
        "core",
        "formats",
        "scoring",
        "summarizers",
        "providers",
        "strategies",
        "datasets",
        "lab",
        "live",
        "widgets",
    },
}

# Imports inside a function that a value makes when it is displayed or priced: the only
# upward edges, each one lazy and named here.
LAZY_UPWARD = {
    ("ctxlab.messages", "ctxlab.widgets._html"),
    ("ctxlab.pruned", "ctxlab.widgets._html"),
    ("ctxlab.budget", "ctxlab.providers.pricing"),
}


def unit(module: str) -> str:
    """The layer a module belongs to."""
    if module in CORE:
        return "core"
    if module == "ctxlab.datasets":
        return "datasets"
    if module in ENTRY or module.startswith("ctxlab.commands."):
        return "entry"
    return module.split(".")[1]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(imported ctxlab module, imported inside a function) for every runtime import."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.extend((resolve(child.module, a.name), in_function) for a in child.names)
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(path.read_text()), False)
    return [(name, lazy) for name, lazy in found if name.split(".")[0] == "ctxlab"]


def resolve(module: str, name: str) -> str:
    """``from a.b import c`` imports module ``a.b.c`` when that is a module, else ``a.b``."""
    candidate = f"{module}.{name}"
    base = ROOT.parent / candidate.replace(".", "/")
    if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
        return candidate
    return module


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
EDGES = {name: imports(path) for name, path in MODULES.items()}


def test_every_module_has_a_known_layer() -> None:
    unknown = {m for m in MODULES if unit(m) not in ALLOWED}
    assert not unknown, f"modules outside the layer table: {sorted(unknown)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_downward(module: str) -> None:
    here = unit(module)
    wrong = [
        target
        for target, lazy in EDGES[module]
        if unit(target) != here
        and unit(target) not in ALLOWED[here]
        and not (lazy and (module, target) in LAZY_UPWARD)
    ]
    assert not wrong, f"{module} ({here}) imports upward: {wrong}"


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {u: set() for u in ALLOWED}
    for module, edges in EDGES.items():
        for target, lazy in edges:
            if (module, target) in LAZY_UPWARD and lazy:
                continue
            if unit(target) != unit(module):
                graph[unit(module)].add(unit(target))
    assert find_cycle(graph) is None, f"packages import in a circle: {find_cycle(graph)}"


def test_no_cycle_between_core_modules() -> None:
    graph = {
        m: {t for t, lazy in EDGES[m] if unit(t) == "core" and t != "ctxlab" and t != m}
        for m in MODULES
        if unit(m) == "core" and m != "ctxlab"
    }
    assert find_cycle(graph) is None, f"core modules import in a circle: {find_cycle(graph)}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_the_checker_finds_what_it_looks_for() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert unit("ctxlab.lab.metrics.cost") == "lab"
    assert unit("ctxlab.tokens") == "core"
    assert "lab" not in ALLOWED["live"] and "widgets" not in ALLOWED["lab"]


def test_every_package_says_what_it_may_import() -> None:
    for init in ROOT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if init.parent == ROOT:
            continue
        assert "import" in doc, f"{init} does not say what it may import"
