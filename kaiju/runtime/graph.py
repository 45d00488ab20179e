"""Dependency layering: pure functions over `{node: {nodes it needs}}`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["CycleError", "dependents", "layers"]


class CycleError(ValueError):
    """The graph has a cycle; `.cycle` lists it with the first node repeated at the end."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


def _find_cycle(graph: Mapping[str, Iterable[str]], nodes: set[str]) -> list[str]:
    """A cycle among `nodes` (each of which is known to be on or behind one)."""
    start = min(nodes)
    path, seen = [start], {start: 0}
    while True:
        nxt = min(n for n in graph[path[-1]] if n in nodes)
        if nxt in seen:
            return path[seen[nxt] :] + [nxt]
        seen[nxt] = len(path)
        path.append(nxt)


def layers(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Group nodes into start layers: each node comes after every node it needs.

    Nodes inside a layer are independent of each other and sorted by name, so the
    order is stable. Raises CycleError naming a cycle, or KeyError for an edge to
    an unknown node.
    """
    needs = {node: set(deps) for node, deps in graph.items()}
    for node, deps in needs.items():
        for dep in deps:
            if dep not in needs:
                raise KeyError(f"{node} needs unknown {dep}")
    result: list[list[str]] = []
    done: set[str] = set()
    left = set(needs)
    while left:
        ready = sorted(n for n in left if needs[n] <= done)
        if not ready:
            raise CycleError(_find_cycle(needs, left))
        result.append(ready)
        done.update(ready)
        left.difference_update(ready)
    return result


def dependents(graph: Mapping[str, Iterable[str]], roots: Iterable[str]) -> set[str]:
    """Every node that needs one of `roots`, directly or through others (roots excluded)."""
    users: dict[str, set[str]] = {}
    for node, deps in graph.items():
        for dep in deps:
            users.setdefault(dep, set()).add(node)
    found: set[str] = set()
    stack = list(roots)
    while stack:
        for user in users.get(stack.pop(), ()):
            if user not in found:
                found.add(user)
                stack.append(user)
    return found - set(roots)
