"""Two apps for the trace across processes: `front` takes an order over HTTP and sends it to
`back` through a stream; `back` ships it, and restocks on a schedule."""

from __future__ import annotations

from kaiju import rpc
from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import Service
from kaiju.streams.producer import StreamProducer


class Front(Service):
    service_name = "front"

    rpc: RPCServer
    producer: StreamProducer

    @rpc.method(permission=Scope.GUEST)
    async def order(self, n: int) -> str:
        self.logger.info("order taken", n=n)
        await self.rpc.call("front.verify", {"n": n})
        return await self.producer.call("back.ship", {"n": n}, app="back")

    @rpc.method
    async def verify(self, n: int) -> bool:
        return n > 0


class Back(Service):
    service_name = "back"

    rpc: RPCServer

    @rpc.method
    async def ship(self, n: int) -> None:
        self.logger.info("shipping", n=n)
        await self.rpc.call("back.store", {"n": -n})

    @rpc.method
    async def store(self, n: int) -> int:
        return n
