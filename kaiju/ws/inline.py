"""A WebSocket call runs in the task that read its frame, until it first waits.

Most calls never wait (a method that answers from memory): run to the end where their frame
was read (`Connection._read`), they cost no task of their own (made, scheduled, registered
with asyncio, called back when done) and no turn of the loop. A call that does wait keeps
the task it started in, which from then on awaits the rest of it (`CallRest`) and nothing
else, while a new task takes over the reading: answers still go out as they are ready, and
what asks for the current task (`asyncio.timeout`, a TaskGroup, a deadline's cancellation)
finds the call's own, from its first step to its last.

Each call runs in a context of its own, a copy of the connection's, as in a task of its own:
what it sets (the request context, a token it resets) is never seen by the next call.
"""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["CallRest"]

_SENT = object()


class CallRest(Generator[Any, Any, Any]):
    """The rest of a call (`coro`, stepped once in `context`) that waits on `first`, what its
    step yielded: awaited, it hands `first` to the task, then steps the coroutine on in
    `context`.

    `cr_await` is the coroutine, as a native coroutine's is what it awaits: what follows a
    task's chain of awaits (the RPC executor finding the task of a request whose deadline
    passed) sees the call's own chain."""

    __slots__ = ("cr_await", "context", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context, first: Any):
        self.cr_await = coro
        self.context = context
        self.first = first

    def __await__(self) -> CallRest:
        return self

    def send(self, value: Any) -> Any:
        first = self.first
        if first is not _SENT:
            self.first = _SENT
            return first
        return self.context.run(self.cr_await.send, value)

    def throw(self, *exc: Any) -> Any:  # what the task threw, passed on as given
        self.first = _SENT
        return self.context.run(self.cr_await.throw, *exc)

    def close(self) -> None:
        self.context.run(self.cr_await.close)
