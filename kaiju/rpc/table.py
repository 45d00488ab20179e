"""MethodTable: the RPC methods of an app by name, and who may call each.

Filled from the `@rpc.method` methods of services (or any object, under a prefix);
`resolve` finds a method and checks access in one step. For the dispatcher's fast path it
also keeps one decoder for a plain request to any method (`plain_decoder`).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import msgspec

from kaiju.rpc import errors as E
from kaiju.rpc.access import Scope, Session
from kaiju.rpc.methods import Method, class_methods

__all__ = ["MethodTable"]


class MethodTable:
    """Methods by RPC name (`<prefix>.<name>`). With `enable_permissions` off, every method
    is callable by everyone; with `kaiju_tools`, the methods marked as kaiju-tools' old names
    are served too."""

    __slots__ = ("methods", "enable_permissions", "kaiju_tools")

    def __init__(self, enable_permissions: bool = True, kaiju_tools: bool = False):
        self.methods: dict[str, Method] = {}
        self.enable_permissions = enable_permissions
        self.kaiju_tools = kaiju_tools

    def add(self, obj: Any, prefix: str) -> list[str]:
        """Register the `@rpc.method` methods of `obj` as `<prefix>.<name>`; returns their names.

        Raises ValueError when a name is taken by a method of another object.
        """
        added = []
        for attr, spec in class_methods(type(obj)):
            if spec.kaiju_tools and not self.kaiju_tools:
                continue
            name = f"{prefix}.{spec.name or attr}"
            existing = self.methods.get(name)
            if existing is not None and getattr(existing.func, "__self__", None) is not obj:
                raise ValueError(f"RPC method {name} is defined twice")
            self.methods[name] = Method(name, prefix, getattr(obj, attr), spec.permission)
            added.append(name)
        return added

    def remove(self, prefix: str) -> None:
        """Forget the methods registered under `prefix` (a service left out or stopped)."""
        for name in [n for n, m in self.methods.items() if m.service == prefix]:
            del self.methods[name]

    def may_call(self, m: Method, scope: Scope, session: Session | None = None) -> bool:
        """Whether a caller with `scope` (and `session`) may use method `m`."""
        return (
            m.permission >= scope
            or not self.enable_permissions
            or (session is not None and session.grants(m.name, m.service))
        )

    def resolve(self, name: Any, scope: Scope, session: Session | None) -> Method:
        """The method called `name` if the caller may use it; else MethodNotFound (a method the
        caller may not see does not exist for them)."""
        m = self.methods.get(name)
        if m is None or not self.may_call(m, scope, session):
            raise E.MethodNotFound(f"Method not found: {name}", data={"method": name})
        return m

    def listing(self, scope: Scope = Scope.SYSTEM, session: Session | None = None) -> list[Method]:
        """The methods a caller may use, sorted by name (all of them for SYSTEM)."""
        return [m for _, m in sorted(self.methods.items()) if self.may_call(m, scope, session)]

    def plain_decoder(self) -> tuple[Callable[[Any], Any], dict[type, Method]] | None:
        """One decoder for a plain request to any method, and the method of each decoded type.

        The union of the methods' request Structs tagged by "method": the envelope and the
        params decode and validate in one pass. None when no method qualifies.
        """
        by_type = {m.request_type: m for m in self.methods.values() if m.request_type is not None}
        if not by_type:
            return None
        return msgspec.json.Decoder(typing.Union[tuple(by_type)]).decode, by_type  # noqa: UP007 -- made from a tuple
