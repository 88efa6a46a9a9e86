"""The layout holds: each plane imports only itself and the planes `ALLOWED` names, and no module
imports itself back through others (type-only and function-local imports count too). From the
bottom: core, then system, then observability; the data plane and the control plane beside each
other above those (neither imports the other); the app on top.
See docs/architecture.md, "Import directions".
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "proxy"
# what each plane may import, besides itself
ALLOWED = {
    "core": set(),
    "system": {"core"},
    "observability": {"core", "system"},
    "dataplane": {"core", "system", "observability"},
    "control": {"core", "system"},
    "app": {"core", "system", "observability", "dataplane", "control"},
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _imports(name: str) -> Iterator[str]:
    """The proxy modules `name` imports, wherever the import statement stands."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            module = target
            while module and module not in MODULES:
                module = module.rpartition(".")[0]
            if module and module != name:
                yield module


GRAPH = {name: set(_imports(name)) for name in MODULES}


def _plane(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_every_module_belongs_to_a_plane() -> None:
    loose = [name for name in MODULES if _plane(name) is None]
    assert sorted(loose) == ["proxy", "proxy.__main__"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _plane(n) is not None))
def test_a_module_imports_only_its_own_plane_and_those_below(name: str) -> None:
    plane = _plane(name)
    assert plane is not None
    upward = sorted(
        target
        for target in GRAPH[name]
        if (other := _plane(target)) is not None and other != plane and other not in ALLOWED[plane]
    )
    assert upward == [], f"{name} ({plane}) imports from planes above or beside it"


def test_there_is_no_import_cycle() -> None:
    cycles = [sorted(component) for component in _strongly_connected(GRAPH) if len(component) > 1]
    assert cycles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root, imported in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(imported)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The checks themselves: a made-up graph with a cycle is caught, as is core importing app."""
    made_up = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in _strongly_connected(made_up) if len(c) > 1] == [["a", "b", "c"]]
    assert "app" not in ALLOWED["core"] and "dataplane" not in ALLOWED["control"]
