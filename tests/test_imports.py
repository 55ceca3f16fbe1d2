"""No import cycle among chestlab's modules.

The graph is read from the source (``ast``), not from a running interpreter: an edge ``a -> b`` for
every ``import`` / ``from ... import`` in ``a`` that names module ``b`` of the package (``from .x
import y`` is an edge to ``x.y`` when that is a module, else to ``x``; imports under ``if
TYPE_CHECKING:`` are left out). Imports at a module's top level (also inside ``if`` / ``try`` /
class bodies) run when it is imported: that graph must be acyclic. Imports inside functions run
later, when the function is called; a cycle through one of them may only join modules of one of the
groups listed below, with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "chestlab"

#: Groups of modules (name prefixes) a cycle through imports inside functions may join, with why.
KNOWN_LAZY: dict[tuple[str, ...], str] = {
    # settings.ensure_builtins() imports the built-in losses when the schema is first read (the losses
    # import settings at their top to declare their sections); settings' pretrain rule asks the
    # engine which datasets it can pretrain on
    ("chestlab.settings", "chestlab.losses", "chestlab.engine"): "the schema and what registers into it",
}


def _in_group(module: str, group: tuple[str, ...]) -> bool:
    return any(module == g or module.startswith(g + ".") for g in group)

Graph = dict[str, set[str]]


def modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's ``__init__``)."""
    out = {}
    for f in sorted((root / package).rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def import_graph(mods: dict[str, tuple[Path, bool]]) -> tuple[Graph, Graph]:
    """(top-level edges, edges from imports inside functions) between the modules ``mods``."""
    top: Graph = {m: set() for m in mods}
    lazy: Graph = {m: set() for m in mods}

    def known(name: str) -> str | None:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in mods else None

    def targets(mod: str, is_pkg: bool, node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base = mod.split(".") if is_pkg else mod.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            where = ".".join(base + ([node.module] if node.module else []))
        else:
            where = node.module or ""
        return [f"{where}.{a.name}" if f"{where}.{a.name}" in mods else where for a in node.names]

    for mod, (path, is_pkg) in mods.items():
        def walk(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for t in targets(mod, is_pkg, child):
                        target = known(t)
                        if target is not None and target != mod:
                            (lazy if in_function else top)[mod].add(target)
                walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        walk(ast.parse(path.read_text(), str(path)), False)
    return top, lazy


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (:func:`_components`), as
    a chain ``[a, b, ..., a]`` (each module imports the next)."""
    return [_chain(graph, comp) for comp in _components(graph)]


def _components(graph: Graph) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def _chain(graph: Graph, comp: set[str]) -> list[str]:
    """The shortest cycle through the component's first module (breadth-first, inside ``comp``)."""
    start = min(comp)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w not in comp:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{sorted(comp)} is not a cycle")


def _show(chains: list[list[str]]) -> str:
    return "; ".join(" -> ".join(c) for c in chains)


def test_the_cycle_finder_finds_a_cycle_and_its_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_relative_and_function_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nfrom .sub import c\n")
    (pkg / "b.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from . import a\ndef f():\n    from .a import x\n")
    (pkg / "sub" / "__init__.py").write_text("from ..b import y\n")
    (pkg / "sub" / "c.py").write_text("from .. import a\n")
    top, lazy = import_graph(modules(tmp_path, "pkg"))
    assert top["pkg.a"] == {"pkg.b", "pkg.sub.c"} and top["pkg.b"] == set() and lazy["pkg.b"] == {"pkg.a"}
    assert top["pkg.sub"] == {"pkg.b"} and top["pkg.sub.c"] == {"pkg.a"}
    assert cycles(top) == [["pkg.a", "pkg.sub.c", "pkg.a"]]


def test_no_import_cycle_among_top_level_imports():
    top, _ = import_graph(modules())
    found = cycles(top)
    assert not found, f"import cycles at module top level: {_show(found)}"


def test_imports_inside_functions_close_cycles_only_inside_the_known_groups():
    top, lazy = import_graph(modules())
    both = {m: top[m] | lazy[m] for m in top}
    found = cycles(both)
    components = _components(both)
    unknown = [c for c, comp in zip(found, components) if not any(all(_in_group(m, g) for m in comp) for g in KNOWN_LAZY)]
    assert not unknown, f"new import cycles through imports inside functions: {_show(unknown)}"
    gone = [why for g, why in KNOWN_LAZY.items() if not any(all(_in_group(m, g) for m in comp) for comp in components)]
    assert not gone, f"no cycle is left in these groups: drop them from KNOWN_LAZY: {gone}"


def test_settings_imports_no_loss_at_its_top():
    top, _ = import_graph(modules())
    assert not {m for m in top["chestlab.settings"] if m.startswith("chestlab.losses")}
