"""The dispatcher's own methods: rpc.api, rpc.discover, rpc.status, rpc.tasks.

`Introspection` reads the server's method table and executor; `RPCServer` registers its
methods under its own name when it starts.
"""

from __future__ import annotations

import re
import time
from fnmatch import translate
from typing import TYPE_CHECKING, Annotated, Any

from msgspec import Meta

from kaiju.rpc.access import Scope
from kaiju.rpc.context import current
from kaiju.rpc.methods import method
from kaiju.rpc.openrpc import openrpc_document

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.rpc.server import RPCServer

__all__ = ["Introspection"]


class Introspection:
    """What the callers of one `RPCServer` may learn of it."""

    def __init__(self, server: RPCServer):
        self.server = server

    @staticmethod
    def _caller() -> tuple[Scope, Any]:
        ctx = current()
        return (ctx.scope, ctx.session) if ctx else (Scope.SYSTEM, None)

    @method(permission=Scope.GUEST)
    async def api(self, pattern: Annotated[str, Meta(max_length=256)] = "*") -> dict:
        """The methods the caller may call (names matching the shell-style `pattern`, at most
        256 characters), with their params and docs."""
        scope, session = self._caller()
        # not fnmatch: its cache keeps every distinct pattern a caller sends; re's is bounded
        match = re.compile(translate(pattern)).match
        return {
            "api": "jsonrpc",
            "version": "2.0",
            "methods": [m.describe() for m in self.server.table.listing(scope, session) if match(m.name)],
        }

    @method(permission=Scope.GUEST)
    async def discover(self) -> dict:
        """An OpenRPC document of the methods the caller may call (and, as `x-topics`, the event
        topics it may subscribe to)."""
        scope, session = self._caller()
        app = self.server.app
        return openrpc_document(
            self.server.table.listing(scope, session),
            title=app.name,
            version=app.version,
            topics=self.server.topic_rules.describe(scope),
        )

    @method
    async def status(self) -> dict:
        """The dispatcher's load and limits."""
        server = self.server
        executor = server.executor
        return {
            "app": server.app.name,
            "env": server.app.env,
            "debug": executor.debug,
            "methods": len(server.table.methods),
            "running": executor.slots.busy,
            "waiting": executor.slots.waiting,
            "in_flight": len(executor.inflight),
            "notifications": len(executor.background),
            "dropped_notifications": executor.dropped,
            "max_parallel_tasks": int(server.max_parallel_tasks),
            "max_queue": int(server.max_queue),
            "default_request_time": server.default_request_time,
            "max_request_time": server.max_request_time,
            "server_time": time.time(),
        }

    @method
    async def tasks(self) -> list[dict]:
        """The requests in flight: method, correlation id, seconds elapsed and left."""
        return self.server.executor.in_flight()
