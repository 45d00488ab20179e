"""Layering: no import cycle between kaiju's parts.

A part is a subpackage (``kaiju/rpc/``) or a top-level module (``kaiju/logging.py``). Every
import counts, at module level or inside a function alike (a lazy import is still a
dependency); only imports under ``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kaiju

ROOT = Path(kaiju.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str | None:
    """The part of kaiju `module` belongs to (None: the package's own __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "kaiju" else None


class _Imports(ast.NodeVisitor):
    """The modules one file imports, outside TYPE_CHECKING blocks."""

    def __init__(self, module: str, is_package: bool):
        self.package = module.split(".") if is_package else module.split(".")[:-1]
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package[: len(self.package) - node.level + 1]
            name = ".".join([*base, node.module] if node.module else base)
        else:
            name = node.module or ""
        self.found.add(name)
        self.found.update(f"{name}.{alias.name}" for alias in node.names)  # `from kaiju import cli`


def part_imports() -> dict[str, dict[str, set[str]]]:
    """part -> the parts it imports -> the modules that import them."""
    edges: dict[str, dict[str, set[str]]] = {}
    for path in ROOT.rglob("*.py"):
        module = _module_name(path)
        source = _part(module)
        if source is None:
            continue
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        for name in visitor.found:
            target = _part(name) if name.startswith("kaiju.") else None
            if target is not None and target != source and ((ROOT / target).is_dir() or (ROOT / f"{target}.py").exists()):
                edges.setdefault(source, {}).setdefault(target, set()).add(module)
    return edges


def cycles(edges: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected groups of more than one part (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, {}):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_finder_sees_a_cycle() -> None:
    edges = {"a": {"b": {"kaiju.a"}}, "b": {"c": {"kaiju.b"}}, "c": {"a": {"kaiju.c.x"}}, "d": {"a": {"kaiju.d"}}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_lazy_and_relative_imports_count_but_type_checking_ones_do_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from kaiju.rpc import RPCServer\n"
        "def f():\n    from ..cache import base\n"
    )
    visitor = _Imports("kaiju.auth.service", is_package=False)
    visitor.visit(ast.parse(source))
    assert "kaiju.cache" in visitor.found
    assert not any(name.startswith("kaiju.rpc") for name in visitor.found)


def test_no_import_cycle_between_kaijus_parts() -> None:
    edges = part_imports()
    assert "rpc" in edges and "http" in edges  # the scan found the package
    found = cycles(edges)
    described = [
        f"{' <-> '.join(group)}: "
        + "; ".join(f"{a} -> {b} in {sorted(edges[a][b])}" for a in group for b in group if b in edges.get(a, {}))
        for group in found
    ]
    assert not found, "\n".join(described)
