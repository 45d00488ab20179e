"""Who may call what: scopes, the minimal session shape, and the permission check.

A caller has a scope; a method has a permission (a scope too). The caller may call the
method when `method.permission >= caller scope` (SYSTEM is 0, the most privileged), or
when the caller's session grants it by name: `"svc.method"`, `"svc"` or `"svc.*"`.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

__all__ = ["Scope", "Session", "parse_scope"]


class Scope(enum.IntEnum):
    """Permission scopes, most privileged first (values as in kaiju-tools)."""

    SYSTEM = 0
    ADMIN = 10
    USER = 100
    GUEST = 1000


def parse_scope(value: Scope | int | str) -> Scope:
    """A Scope from a Scope, its value or its name (any case: "guest"); raises ValueError otherwise."""
    if isinstance(value, Scope):
        return value
    if isinstance(value, str):
        try:
            return Scope[value.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown scope {value!r}, expected one of {', '.join(s.name.lower() for s in Scope)}"
            ) from None
    return Scope(value)


class Session(msgspec.Struct, kw_only=True):
    """What the dispatcher needs to know of a caller's session.

    `scope` replaces the transport's default scope; `permissions` grants single methods
    (`"svc.method"`) or whole services (`"svc"` or `"svc.*"`) beyond the scope. The sessions
    and auth services build these; a transport passes one to `RPCServer.handle(session=...)`.
    """

    id: str
    user_id: Any = None
    scope: Scope = Scope.GUEST
    permissions: frozenset[str] = frozenset()
    data: dict[str, Any] = {}

    def grants(self, method: str, service: str) -> bool:
        """Whether `permissions` names this method or its whole service."""
        perms = self.permissions
        return bool(perms) and (method in perms or service in perms or f"{service}.*" in perms)
