"""The methods the dispatcher itself exposes: rpc.api, rpc.discover, rpc.status, rpc.tasks."""

from __future__ import annotations

import time
from fnmatch import fnmatchcase
from typing import Any

from kaiju.rpc.access import Scope
from kaiju.rpc.context import _current
from kaiju.rpc.methods import method
from kaiju.rpc.openrpc import openrpc_document

__all__ = ["Introspection"]


class Introspection:
    """Mixed into RPCServer: its introspection methods (they read the server's own state)."""

    _methods: dict
    _slots: Any
    _inflight: dict
    _background: set
    _debug: bool

    @method(permission=Scope.GUEST)
    async def api(self, pattern: str = "*") -> dict:
        """The methods the caller may call (names matching `pattern`), with their params and docs."""
        ctx = _current.get()
        scope, session = (ctx.scope, ctx.session) if ctx else (Scope.SYSTEM, None)
        return {
            "api": "jsonrpc",
            "version": "2.0",
            "methods": [d for d in self.describe(scope, session) if fnmatchcase(d["name"], pattern)],
        }

    @method(permission=Scope.GUEST)
    async def discover(self) -> dict:
        """An OpenRPC document of the methods the caller may call."""
        ctx = _current.get()
        scope, session = (ctx.scope, ctx.session) if ctx else (Scope.SYSTEM, None)
        return openrpc_document(self.list_methods(scope, session), title=self.app.name, version=self.app.version)

    @method
    async def status(self) -> dict:
        """The dispatcher's load and limits."""
        return {
            "app": self.app.name,
            "env": self.app.env,
            "debug": self._debug,
            "methods": len(self._methods),
            "running": self._slots.busy,
            "waiting": self._slots.waiting,
            "in_flight": len(self._inflight),
            "notifications": len(self._background),
            "max_parallel_tasks": int(self.max_parallel_tasks),
            "default_request_time": self.default_request_time,
            "max_request_time": self.max_request_time,
            "server_time": time.time(),
        }

    @method
    async def tasks(self) -> list[dict]:
        """The requests in flight: method, correlation id, seconds elapsed and left."""
        now = self._loop.time()
        return sorted(
            (
                {"method": c.method, "correlation_id": c.correlation_id, "elapsed": round(now - c.started, 3), "left": round(c.loop_deadline - now, 3)}
                for c in self._inflight
            ),
            key=lambda d: -d["elapsed"],
        )
