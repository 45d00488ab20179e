"""Spans of the calls below a request (`Telemetry` setting `detail: full`): caches, locks, Redis.

Off by default: a request then has its HTTP, RPC and stream spans only. With `detail: full`:

- each call a cache or a lock service makes to its store is a child span, `cache get`,
  `cache m_set`, `lock acquire` (its duration is the lock wait), ..., with `kaiju.service`
  naming the service. No key is recorded: a cache key may hold a session id or a user's
  address, which a trace must not carry;
- each Redis command sent on its own is a client span named after the command (`GET`,
  `XADD`, `EVALSHA`), with `db.system.name` ("redis"), `db.operation.name`,
  `db.namespace` (the database number), `server.address` and `server.port`; its arguments
  are left out for the same reason. A pipeline's commands go out together and are not
  traced one by one.

The store calls are traced by wrapping the service's own methods on the instance at its
start (`trace_calls`): a service started without `detail: full` keeps its plain methods,
at no cost. This module imports nothing of OpenTelemetry (the services import it at start).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.telemetry.tracing import Tracing

__all__ = ["trace_calls", "traced_redis"]


def trace_calls(service: Any, tracing: Tracing | None, kind: str, methods: Iterable[str]) -> None:
    """Make each of `methods` of `service` (its store calls, e.g. `_get`) a child span
    `<kind> <name>` when `tracing` says `full`; otherwise give back its plain methods (a
    service started again without full detail)."""
    for name in methods:
        service.__dict__.pop(name, None)  # the class's own method again
        if tracing is not None and tracing.full:
            setattr(service, name, _traced(getattr(service, name), tracing, f"{kind} {name.lstrip('_')}", service.name))


def _traced(call: Callable[..., Any], tracing: Tracing, span_name: str, service: str) -> Callable[..., Any]:
    attributes = {"kaiju.service": service}

    @functools.wraps(call)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        with tracing.child(span_name, attributes=attributes):
            return await call(*args, **kwargs)

    return traced


def traced_redis(base: type, tracing: Tracing, connection: dict[str, Any]) -> type:
    """A subclass of the client class `base` (`redis.asyncio.Redis`) whose commands are
    client spans; `connection` is the pool's connection settings (host, port, db)."""
    from kaiju.telemetry.tracing import CLIENT

    attributes: dict[str, Any] = {"db.system.name": "redis", "db.system": "redis"}
    if connection.get("host"):
        attributes["server.address"] = connection["host"]
        attributes["server.port"] = connection.get("port", 6379)
    if connection.get("path"):
        attributes["server.address"] = connection["path"]
    attributes["db.namespace"] = str(connection.get("db", 0))

    class TracedRedis(base):
        async def execute_command(self, *args: Any, **options: Any) -> Any:
            name = args[0] if args else "COMMAND"
            command = (name.decode() if isinstance(name, bytes) else str(name)).upper()
            span = tracing.start(command, CLIENT)
            if span.is_recording():
                span.set_attributes({**attributes, "db.operation.name": command})
            with tracing.current(span):
                return await super().execute_command(*args, **options)

    return TracedRedis
