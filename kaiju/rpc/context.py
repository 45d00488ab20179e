"""The request context: who calls, under which correlation id, until when.

Set by the dispatcher around each method call in a `ContextVar`, so a method (and every
log line it writes) sees its own request; a nested call gets its own context and the
caller's comes back after it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import msgspec

from kaiju.rpc.access import Scope

__all__ = [
    "failures",
    "note_failure",
    "RequestContext",
    "correlation_ids",
    "current",
    "current_var",
    "log_fields",
    "new_correlation_id",
    "request_context",
]

# The request being served in this task; set by the executor around each method call.
current_var: ContextVar[RequestContext | None] = ContextVar("kaiju_rpc_request", default=None)
_current = current_var

# A random per-process prefix and a counter: unique enough for tracing, and no syscall per
# request. `next(correlation_ids)` runs in C: the dispatcher takes one per request.
correlation_ids = map((os.urandom(4).hex() + "-").__add__, map(str, itertools.count(1)))


def new_correlation_id() -> str:
    """A fresh correlation id: a random per-process prefix and a counter."""
    return next(correlation_ids)


class RequestContext(msgspec.Struct, eq=False, kw_only=True):
    """One request in flight (a msgspec Struct: cheap to create, compared by identity).

    `loop_deadline` is the deadline on the event loop's clock; `deadline` the same moment
    as unix time. `session` is the caller's `Session` (or None); `headers` the request
    headers as given; `method` the RPC method being run; `request_id` the JSON-RPC id of
    the request (None for a notification or an in-process call); `transport` what brought
    it in ("http", "stream", "task" or "internal"); `client` the caller's address when the
    transport has one; `response_headers` headers a middleware adds to the response (None:
    none).
    """

    correlation_id: str
    loop_deadline: float
    scope: Scope = Scope.GUEST
    session: Any = None
    headers: Any = None
    method: str | None = None
    started: float = 0.0
    # False: watched by the server's shared deadline tick; True: expired by it; None: not watched
    expired: bool | None = False
    request_id: Any = None
    # whether running its method takes a max_parallel_tasks slot: not for a call nested in
    # another method's (it runs under its caller's slot), decided when the context is made
    takes_slot: bool = True
    transport: str = "internal"
    response_headers: dict[str, str] | None = None
    # the caller's address as the transport knows it (HTTP: the peer, or the real-IP header
    # of a trusted proxy); None for callers inside the app (tasks, streams, in-process calls)
    client: str | None = None

    @property
    def deadline(self) -> float:
        """The deadline as unix time (seconds); call inside the running loop."""
        return self.loop_deadline - asyncio.get_running_loop().time() + time.time()

    def time_left(self) -> float:
        """Seconds until the deadline (negative once past); call inside the running loop."""
        return self.loop_deadline - asyncio.get_running_loop().time()

    def copy(self) -> RequestContext:
        """A context for one more execution of the same request (a batch item): the caller,
        the deadline and the transport kept, what one execution records reset."""
        return msgspec.structs.replace(
            self, method=None, started=0.0, expired=False, request_id=None, response_headers=None
        )

    def __repr__(self) -> str:
        return f"<RequestContext {self.correlation_id} method={self.method} scope={self.scope.name}>"


def current() -> RequestContext | None:
    """The context of the request being served in this task, or None outside a request."""
    return _current.get()


def log_fields() -> dict[str, Any] | None:
    """Fields for log records: `{"correlation_id": ...}` inside a request, else None."""
    ctx = _current.get()
    return None if ctx is None else {"correlation_id": ctx.correlation_id}


@contextmanager
def request_context(
    *,
    scope: Scope = Scope.SYSTEM,
    timeout: float | None = None,
    correlation_id: str | None = None,
    headers: Any = None,
) -> Iterator[RequestContext]:
    """Run a block as a request of its own, outside the dispatcher: a task's function, a
    script. Inside it `current()` and log lines see the context; RPC calls made from it
    are nested calls (bounded by `timeout`, keeping the correlation id) that still take a
    `max_parallel_tasks` slot, since no dispatcher slot is held here. Restores the
    previous context on exit.
    """
    loop = asyncio.get_running_loop()
    now = loop.time()
    deadline = now + timeout if timeout is not None else math.inf
    ctx = RequestContext(
        correlation_id=correlation_id or new_correlation_id(),
        loop_deadline=deadline,
        scope=scope,
        headers=headers,
        started=now,
        expired=None,
    )
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


# Where a method's own exception is told, in the task that runs it (`note_failure`): set by a
# caller that wants to know what failed beneath the RPCError it will be answered (a stream
# listener, for `retry_on` and its dead letters); None: nobody asks, and a failure costs one
# lookup. Nothing is asked on success.
failures: ContextVar[Callable[[BaseException], None] | None] = ContextVar("kaiju_rpc_failures", default=None)


def note_failure(exc: BaseException) -> None:
    """Tell whoever listens in this task (`failures`) that a method raised `exc`."""
    hear = failures.get()
    if hear is not None:
        hear(exc)
