"""The app whose API the generated clients are tested against: Structs in and out, optional
params, an enum, a method of another service, events."""

from __future__ import annotations

import datetime
from typing import Literal

import msgspec

from kaiju import rpc
from kaiju.rpc import Scope
from kaiju.runtime.service import Service


class Item(msgspec.Struct):
    """One line of an order."""

    name: str
    qty: int = 1


class Receipt(msgspec.Struct):
    total: int
    items: list[Item]
    note: str | None = None
    at: datetime.datetime | None = None


class Shop(Service):
    service_name = "shop"

    @rpc.method(permission=Scope.GUEST)
    async def add(self, a: int, b: int = 0) -> int:
        """Add two numbers.

        The second defaults to 0."""
        return a + b

    @rpc.method(permission=Scope.GUEST)
    async def order(self, items: list[Item], note: str | None = None, kind: Literal["pickup", "post"] = "post") -> Receipt:
        """Price an order."""
        return Receipt(total=sum(i.qty for i in items), items=items, note=note or kind)

    @rpc.method(permission=Scope.GUEST)
    async def tags(self) -> dict[str, list[str]]:
        return {"fruit": ["apple"]}

    @rpc.method(permission=Scope.GUEST)
    async def forget(self, key: str) -> None:
        """Forget nothing, return nothing."""

    @rpc.method(permission=Scope.GUEST)
    async def shout(self, topic: str, data: object = None) -> bool:
        """Publish an event."""
        await self.app.publish(topic, data)
        return True

    @rpc.method(permission=Scope.USER)
    async def mine(self) -> str:
        return "users only"
