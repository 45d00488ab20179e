"""Callers remembered by AuthService and CacheSessions (kaiju.auth.known): with an Events service,
a verified token or a loaded session serves the next request without a read, and a notice
(logout, revoked family, revoke_user, a session written) ends that at once."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from kaiju.auth.known import Known
from tests.auth.support import PASSWORDS, bearer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the table ------------------------------------------------------------------------------


def test_an_entry_lives_its_seconds_and_no_longer():
    clock = Clock()
    known = Known(clock=clock)
    known.keep("t", "alice", 5.0, [("user", "alice")], known.generation)
    assert known.get("t") == "alice"
    clock.now += 4.99
    assert known.get("t") == "alice"
    clock.now += 0.01
    assert known.get("t") is None and len(known) == 0
    known.keep("u", "bob", 0.0, [], known.generation)  # a token at its expiry: not kept
    known.keep("v", "bob", -3.0, [], known.generation)
    assert known.get("u") is None and known.get("v") is None


def test_a_notice_forgets_what_it_names_and_nothing_else():
    known = Known(clock=Clock())
    since = known.generation
    known.keep("t1", "a", 60, [("family", "f1"), ("user", "alice")], since)
    known.keep("t2", "a", 60, [("family", "f2"), ("user", "alice")], since)
    known.keep("t3", "b", 60, [("family", "f3"), ("user", "bob")], since)
    known.revoked("family", "f1")
    assert (known.get("t1"), known.get("t2"), known.get("t3")) == (None, "a", "b")
    known.revoked("user", "alice")
    assert (known.get("t2"), known.get("t3")) == (None, "b")
    known.revoked("session", "t3")  # a kind and value no entry carries
    assert known.get("t3") == "b"
    known.resync()
    assert known.get("t3") is None and len(known) == 0


def test_a_verification_overtaken_by_a_notice_is_not_kept():
    known = Known(clock=Clock())
    since = known.generation  # read before the lookup began
    known.revoked("family", "f1")  # arrives while the lookup is out
    known.keep("t1", "a", 60, [("family", "f1")], since)
    assert known.get("t1") is None
    known.keep("t1", "a", 60, [("family", "f1")], known.generation)
    assert known.get("t1") == "a"


def test_the_oldest_entry_makes_room():
    known = Known(limit=2, clock=Clock())
    for key in ("a", "b", "c"):
        known.keep(key, key, 60, [("user", key)], known.generation)
    assert (known.get("a"), known.get("b"), known.get("c")) == (None, "b", "c")
    known.revoked("user", "a")  # its tag went with it
    assert len(known) == 2


# -- in an app, over HTTP -------------------------------------------------------------------


@pytest.fixture(params=["memory+events", "redis+events"])
def backend(request) -> str:
    return request.param


async def token_pair(app, username="alice"):
    return await app.client.result("auth.token", {"username": username, "password": PASSWORDS[username]})


async def test_a_verified_token_is_not_read_again_until_a_notice_ends_it(make_app):
    async with make_app() as app:
        pair = await token_pair(app)
        headers = bearer(pair["access_token"])
        assert (await app.client.result("auth.whoami", headers=headers))["user_id"] == "alice"
        # its family record deleted behind the service's back: no notice, so it is still trusted
        family = jwt.decode(pair["access_token"], options={"verify_signature": False})["fam"]
        await app.cache.delete(app.auth._family_key(family))
        assert (await app.client.result("auth.whoami", headers=headers))["user_id"] == "alice"
        assert app.auth.known(headers["Authorization"]) is not None
        await app.auth.revoke_family(family)  # the notice: this process forgets before it returns
        assert app.auth.known(headers["Authorization"]) is None
        error = await app.client.error("auth.whoami", headers=headers)
        assert error["data"]["type"] == "NotAuthorized"


async def test_a_logout_ends_a_remembered_token_and_only_its_login(make_app):
    async with make_app() as app:
        first, second = await token_pair(app), await token_pair(app)
        for pair in (first, second):
            assert (await app.client.result("auth.whoami", headers=bearer(pair["access_token"])))["user_id"] == "alice"
        assert await app.client.result("auth.logout", headers=bearer(first["access_token"])) is True
        assert (await app.client.error("auth.whoami", headers=bearer(first["access_token"])))["data"]["type"] == "NotAuthorized"
        assert (await app.client.result("auth.whoami", headers=bearer(second["access_token"])))["user_id"] == "alice"


async def test_without_recheck_every_request_reads_the_family(make_app):
    async with make_app(recheck=0) as app:
        pair = await token_pair(app)
        headers = bearer(pair["access_token"])
        assert (await app.client.result("auth.whoami", headers=headers))["user_id"] == "alice"
        family = jwt.decode(pair["access_token"], options={"verify_signature": False})["fam"]
        await app.cache.delete(app.auth._family_key(family))
        assert (await app.client.error("auth.whoami", headers=headers))["data"]["type"] == "NotAuthorized"


async def test_what_a_method_puts_in_a_token_sessions_data_stays_in_its_request(make_app):
    async with make_app() as app:
        headers = bearer((await token_pair(app))["access_token"])
        assert await app.client.result("orders.put", {"key": "k", "value": 1}, headers=headers) == {"k": 1}
        assert await app.client.result("orders.put", {"key": "j", "value": 2}, headers=headers) == {"j": 2}


async def test_a_remembered_session_sees_every_write_and_ends_with_its_logout(make_app):
    async with make_app() as app:
        sid = (await app.client.result("auth.login", {"username": "alice", "password": PASSWORDS["alice"]}))["session_id"]
        headers = {"Session-Id": sid}
        assert await app.client.result("orders.put", {"key": "a", "value": 1}, headers=headers) == {"a": 1}
        assert await app.client.result("orders.put", {"key": "b", "value": 2}, headers=headers) == {"a": 1, "b": 2}
        assert app.sessions.known(sid) is None  # a write is announced: the copy is forgotten...
        assert (await app.client.result("auth.whoami", headers=headers))["user_id"] == "alice"
        assert app.sessions.known(sid).data == {"a": 1, "b": 2}  # ... and the next read remembered
        # deleted in the store directly (no notice): the copy this process remembers still serves
        await app.cache.delete(app.sessions._key(sid))
        assert (await app.client.result("auth.whoami", headers=headers))["user_id"] == "alice"
        assert app.sessions.known(sid) is not None
        await app.sessions.delete_session(sid)  # a logout: announced, so gone at once
        answer, out = await app.client.call("auth.whoami", headers=headers)
        assert answer["result"]["user_id"] is None and out["Session-Id"] == ""


async def test_concurrent_requests_of_a_remembered_session_keep_all_their_changes(make_app):
    async with make_app() as app:
        sid = (await app.client.result("auth.login", {"username": "alice", "password": PASSWORDS["alice"]}))["session_id"]
        headers = {"Session-Id": sid}
        await app.client.result("auth.whoami", headers=headers)  # now remembered
        calls = [app.client.result("orders.put", {"key": f"k{i}", "value": i}, headers=headers) for i in range(5)]
        await asyncio.gather(*calls)
        data = await app.client.result("orders.put", {"key": "last"}, headers=headers)
        assert data == {"k0": 0, "k1": 1, "k2": 2, "k3": 3, "k4": 4, "last": True}
