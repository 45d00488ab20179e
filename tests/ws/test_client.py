"""WSRPCClient against a running app: calls, batches, notifications, errors, subscriptions,
and reconnecting after the server went away."""

from __future__ import annotations

import asyncio

import pytest

from kaiju.http.ws_client import Event, WSRPCClient
from kaiju.rpc.errors import InvalidParams, MethodNotFound, PermissionDenied
from kaiju.testing import eventually
from kaiju.testing.services import started


async def test_calls_batches_notifications_and_errors(app):
    client = WSRPCClient(url=app.ws_url)
    async with started(client):
        results = await asyncio.gather(client.call("shop.sleep", {"seconds": 0.2}), client.call("shop.echo", [5]))
        assert results == [0.2, 5]
        assert await client.call("shop.echo", {"data": "x"}, nowait=True) is None
        assert await client.call_multiple(("shop.echo", {"data": 1}), {"method": "shop.echo", "params": {"data": 2}}) == [1, 2]
        with pytest.raises(MethodNotFound):
            await client.call("shop.mine")
        with pytest.raises(InvalidParams):
            await client.call("shop.sleep", {"seconds": "long"})
        mixed = await client.call_multiple(("shop.echo", [1]), ("nope", None), raise_exception=False)
        assert mixed[0] == 1 and isinstance(mixed[1], MethodNotFound)


async def test_subscriptions_iterate_events_and_survive_a_reconnect(app):
    client = WSRPCClient(url=app.ws_url, reconnect_min=0.05, reconnect_max=0.2)
    async with started(client):
        with pytest.raises(PermissionDenied):
            await client.subscribe("orders.*")
        events = await client.subscribe("news.*")
        await app.app.publish("news.one", {"n": 1})
        assert await asyncio.wait_for(events.__anext__(), 10) == Event("news.one", {"n": 1})

        await app.server.stop()  # the server goes away and comes back on the same port
        port = int(app.ws_url.split(":")[2].split("/")[0])
        app.server.port = port
        await app.server.start()
        await eventually(lambda: client.reconnects == 1, what="a reconnect")
        await eventually(lambda: app.server.serving.ws.index.patterns, what="the subscription renewed")
        await app.app.publish("news.two", 2)
        assert await asyncio.wait_for(events.__anext__(), 10) == Event("news.two", 2)
        await events.close()
        assert not app.server.serving.ws.index.patterns
