"""The echo service every RPC benchmark serves: `echo.echo(data)`, callable by guests."""

from __future__ import annotations

from kaiju.rpc import Scope, method
from kaiju.runtime.service import Service


class EchoService(Service):
    service_name = "echo"

    async def start(self) -> None:
        pass

    @method(permission=Scope.GUEST)
    async def echo(self, data: object = None) -> object:
        """Return `data` unchanged."""
        return data

    @method(permission=Scope.USER)
    async def private(self, data: object = None) -> object:
        """`echo` for callers with a session or a token of a user (bench/auth.py)."""
        return data
