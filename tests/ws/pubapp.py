"""A service of the two-process test app: publishes what it is asked to."""

from __future__ import annotations

from kaiju import rpc
from kaiju.rpc import Scope
from kaiju.runtime.service import Service


class Publisher(Service):
    service_name = "news"

    @rpc.method(permission=Scope.GUEST)
    async def publish(self, topic: str, data: object = None) -> bool:
        await self.app.publish(topic, data)
        return True
