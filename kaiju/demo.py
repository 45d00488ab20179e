"""A small service for the example app in conf/example.yml."""

from __future__ import annotations

from typing import Any

from kaiju.rpc.access import Scope
from kaiju.rpc.context import current
from kaiju.rpc.errors import NotAuthorized
from kaiju.rpc.methods import method
from kaiju.runtime.service import Service

__all__ = ["DemoService"]


class DemoService(Service):
    """Greets, echoes and counts (service name "demo").

    RPC methods: `demo.echo(data)` and `demo.hello(name)` for guests, `demo.visits()` for
    logged-in users, `demo.tick()` and `demo.stats()` for the system scope (the example's
    tasks call `demo.tick`).
    """

    service_name = "demo"

    greeting: str = "hello"

    async def start(self) -> None:
        self.calls = 0
        self.ticks = 0
        self.logger.info("demo service ready", greeting=self.greeting)

    async def stop(self, exception: Exception | None = None) -> None:
        self.logger.info("demo service stopped", calls=self.calls, ticks=self.ticks)

    @method(permission=Scope.GUEST)
    async def echo(self, data: Any = None) -> Any:
        """Return `data` unchanged."""
        self.calls += 1
        return data

    @method(permission=Scope.GUEST)
    async def hello(self, name: str = "world") -> str:
        """Return the greeting for `name`."""
        self.calls += 1
        return f"{self.greeting}, {name}"

    @method(permission=Scope.USER)
    async def visits(self) -> dict[str, Any]:
        """Count the caller's calls in their session (saved with it); returns the user and the count."""
        ctx = current()
        session = ctx.session if ctx is not None else None
        if session is None:  # a USER method: the dispatcher lets no caller without a session in
            raise NotAuthorized()
        session.data["visits"] = session.data.get("visits", 0) + 1
        return {"user_id": session.user_id, "visits": session.data["visits"]}

    @method
    async def tick(self, source: str = "") -> int:
        """Count one tick (called by the example's tasks); returns the count."""
        self.ticks += 1
        self.logger.debug("tick", source=source, ticks=self.ticks)
        return self.ticks

    @method
    async def stats(self) -> dict[str, int]:
        """Calls and ticks so far."""
        return {"calls": self.calls, "ticks": self.ticks}
