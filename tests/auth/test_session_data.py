"""A method's changes to `session.data`: saved at the end of the request, merged key by key
with concurrent requests of the same session; on the memory and the Redis backends."""

from __future__ import annotations

import asyncio
import logging
import time

from tests.auth.support import PASSWORDS, eventually


async def logged_in(app) -> dict[str, str]:
    answer, headers = await app.client.call("auth.login", {"username": "alice", "password": PASSWORDS["alice"]})
    return {"Session-Id": answer["result"]["session_id"]}


async def test_a_change_is_saved_and_seen_by_the_next_request(app):
    sid = await logged_in(app)
    assert await app.client.result("orders.put", {"key": "theme", "value": "dark"}, headers=sid) == {"theme": "dark"}
    assert await app.client.result("orders.cart", headers=sid) == {"theme": "dark"}
    assert await app.client.result("orders.drop", {"key": "theme"}, headers=sid) == {}
    assert await app.client.result("orders.cart", headers=sid) == {}


async def test_a_request_that_changes_nothing_writes_nothing(app):
    sid = await logged_in(app)
    await app.client.result("orders.put", {"key": "a"}, headers=sid)
    version = (await app.sessions.load_session(sid["Session-Id"])).version
    await app.client.result("orders.cart", headers=sid)
    assert (await app.sessions.load_session(sid["Session-Id"])).version == version


async def _concurrently(app, sid, *puts):
    orders = app.orders
    calls = [asyncio.ensure_future(app.client.call("orders.put", {**put, "wait": True}, headers=sid)) for put in puts]

    async def all_arrived():
        return orders.arrived == len(puts)

    await eventually(all_arrived, what="every request waiting at the gate")
    orders.gate.set()
    return [answer for answer, _ in await asyncio.gather(*calls)]


async def test_concurrent_requests_keep_each_others_keys(app):
    sid = await logged_in(app)
    answers = await _concurrently(app, sid, {"key": "book"}, {"key": "pen"}, {"key": "ink"})
    assert all("result" in answer for answer in answers)
    assert await app.client.result("orders.cart", headers=sid) == {"book": True, "pen": True, "ink": True}


async def test_concurrent_writes_of_one_key_keep_one_and_say_so(app, caplog):
    sid = await logged_in(app)
    with caplog.at_level(logging.WARNING):
        await _concurrently(app, sid, {"key": "color", "value": "red"}, {"key": "color", "value": "blue"})
    assert (await app.client.result("orders.cart", headers=sid))["color"] in ("red", "blue")
    assert any("same session keys" in record.getMessage() for record in caplog.records)


async def test_a_logout_during_a_request_is_not_undone_by_its_save(app):
    sid = await logged_in(app)
    put = asyncio.ensure_future(app.client.call("orders.put", {"key": "late", "wait": True}, headers=sid))

    async def arrived():
        return app.orders.arrived == 1

    await eventually(arrived, what="the request waiting at the gate")
    assert await app.client.result("auth.logout", headers=sid) is True
    app.orders.gate.set()
    await put
    assert await app.sessions.load_session(sid["Session-Id"]) is None


async def test_the_ttl_slides_when_a_quarter_has_passed(app, backend):
    sid = (await logged_in(app))["Session-Id"]
    ttl = float(app.sessions.ttl)
    key = f"{app.sessions.key_prefix}.{sid}"  # where CacheSessions keeps a session (documented)
    aged = await app.sessions.load_session(sid)
    aged.saved_at = time.time() - 0.3 * ttl  # the stored copy, as if last saved long ago
    await app.cache.set(key, aged, ttl=0.7 * ttl)
    loaded = await app.sessions.load_session(sid)
    await app.sessions.finish_session(loaded)
    stored = await app.sessions.load_session(sid)
    assert stored.version == aged.version + 1, "an unchanged session past a quarter of its TTL is saved again"
    assert time.time() - stored.saved_at < 0.25 * ttl
    if backend == "redis":
        assert await app.cache.redis.client.pttl(app.cache.full_key(key)) > 0.9 * ttl * 1000
    await app.sessions.finish_session(stored)  # recent and unchanged: no write
    assert (await app.sessions.load_session(sid)).version == stored.version
