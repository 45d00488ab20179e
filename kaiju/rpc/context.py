"""The request context: who calls, under which correlation id, until when.

Set by the dispatcher around each method call in a `ContextVar`, so a method (and every
log line it writes) sees its own request; a nested call gets its own context and the
caller's comes back after it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from kaiju.rpc.access import Scope

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.rpc.access import Session

__all__ = ["RequestContext", "current", "log_fields", "new_correlation_id"]

_current: ContextVar[RequestContext | None] = ContextVar("kaiju_rpc_request", default=None)

# A random per-process prefix and a counter: unique enough for tracing, and no syscall per request.
_prefix = os.urandom(4).hex()
_counter = itertools.count(1)


def new_correlation_id() -> str:
    """A fresh correlation id (16 hex digits)."""
    return f"{_prefix}{next(_counter) & 0xFFFFFFFF:08x}"


class RequestContext:
    """One request in flight.

    `deadline` is unix time (seconds); `loop_deadline` the same moment on the loop's clock.
    `session` is the caller's `Session` (or None); `headers` the request headers as given.
    """

    __slots__ = (
        "correlation_id", "deadline", "loop_deadline", "scope", "session", "headers",
        "method", "started", "task", "expired",
    )

    def __init__(
        self,
        correlation_id: str,
        deadline: float,
        loop_deadline: float,
        scope: Scope = Scope.GUEST,
        session: Session | None = None,
        headers: Any = None,
    ):
        self.correlation_id = correlation_id
        self.deadline = deadline
        self.loop_deadline = loop_deadline
        self.scope = scope
        self.session = session
        self.headers = headers
        self.method: str | None = None
        self.started = 0.0
        self.task: asyncio.Task | None = None
        self.expired = False

    def copy(self) -> RequestContext:
        """A context for one more execution of the same request (a batch item)."""
        return RequestContext(self.correlation_id, self.deadline, self.loop_deadline, self.scope, self.session, self.headers)

    def time_left(self) -> float:
        """Seconds until the deadline (negative once past)."""
        return self.deadline - time.time()

    def __repr__(self) -> str:
        return f"<RequestContext {self.correlation_id} method={self.method} scope={self.scope.name}>"


def current() -> RequestContext | None:
    """The context of the request being served in this task, or None outside a request."""
    return _current.get()


def log_fields() -> dict[str, Any] | None:
    """Fields for log records: `{"correlation_id": ...}` inside a request, else None."""
    ctx = _current.get()
    return None if ctx is None else {"correlation_id": ctx.correlation_id}
