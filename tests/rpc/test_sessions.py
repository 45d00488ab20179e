"""Sessions: the Session-Id and Authorization headers, CacheSessions, an Authenticator."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import pytest

from kaiju import rpc
from kaiju.cache.memory import MemoryCache
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer, Scope, Session
from kaiju.rpc.context import current
from kaiju.rpc.errors import NotAuthorized
from kaiju.auth.sessions import CacheSessions
from kaiju.rpc.sessions import Authenticator, SessionStore
from kaiju.runtime.service import Service
from kaiju.testing import eventually, free_port
from kaiju.testing.services import started

decode = msgspec.json.decode


class Profile(Service):
    service_name = "profile"

    async def start(self) -> None:
        pass

    @rpc.method(permission=Scope.GUEST)
    async def whoami(self) -> dict:
        ctx = current()
        session = ctx.session
        return {"scope": ctx.scope.name, "user": session.user_id if session else None}

    @rpc.method(permission=Scope.USER)
    async def orders(self) -> list:
        return [current().session.user_id, 1, 2]

    @rpc.method  # SYSTEM: callable by a session only through its permissions
    async def report(self) -> str:
        return "report"


class Tokens(Authenticator):
    """Bearer tokens from a fixed table; other schemes are not this service's business."""

    service_name = "tokens"
    calls: int = 0

    async def start(self) -> None:
        pass

    async def authenticate(self, authorization: str) -> Session | None:
        self.calls += 1
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer":
            return None
        if token == "alice-token":
            return Session(id="", user_id="alice", scope=Scope.USER)
        if token == "boom":
            raise RuntimeError("the token service is down")
        raise NotAuthorized("Not authorized: unknown token", data={"scheme": scheme})


def call(method: str, rid: int = 1) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": rid, "method": method})


@pytest.fixture
async def app():
    cache, sessions, profile, tokens, server = MemoryCache(), CacheSessions(ttl=60), Profile(), Tokens(), RPCServer()
    async with started(cache, sessions, profile, tokens, server):
        yield sessions, tokens, server


async def test_the_server_finds_the_store_and_the_authenticator_by_type(app):
    sessions, tokens, server = app
    assert server.sessions is sessions and server.auth is tokens


async def test_session_id_loads_the_session_its_scope_and_its_user(app):
    sessions, _, server = app
    alice = await sessions.new_session(user_id="alice", scope="user")
    body, headers = await server.handle(call("profile.orders"), {"Session-Id": alice.id})
    assert decode(body)["result"] == ["alice", 1, 2]
    assert headers["Session-Id"] == alice.id
    body, _ = await server.handle(call("profile.whoami"), {"session-id": alice.id})  # any case
    assert decode(body)["result"] == {"scope": "USER", "user": "alice"}


async def test_without_a_session_the_transport_scope_applies(app):
    body, headers = await app[2].handle(call("profile.orders"))
    assert decode(body)["error"]["data"]["type"] == "MethodNotFound"
    assert "Session-Id" not in headers


async def test_an_unknown_or_expired_session_answers_an_empty_session_id(app):
    sessions, _, server = app
    gone = await sessions.new_session(user_id="bob")
    await sessions.delete_session(gone.id)
    for sid in (gone.id, "no-such-session", "../bad id"):
        body, headers = await server.handle(call("profile.whoami"), {"Session-Id": sid})
        assert decode(body)["result"] == {"scope": "GUEST", "user": None}
        assert headers["Session-Id"] == ""


async def test_session_permissions_grant_single_methods(app):
    sessions, _, server = app
    reporter = await sessions.new_session(user_id="rita", scope=Scope.USER, permissions=["profile.report"])
    body, _ = await server.handle(call("profile.report"), {"Session-Id": reporter.id})
    assert decode(body)["result"] == "report"
    plain = await sessions.new_session(user_id="paul")
    body, _ = await server.handle(call("profile.report"), {"Session-Id": plain.id})
    assert decode(body)["error"]["data"]["type"] == "MethodNotFound"


async def test_a_session_expires_ttl_after_it_was_saved():
    cache, sessions = MemoryCache(), CacheSessions(ttl=1.0)  # room to load it back before it expires
    async with started(cache, sessions):
        s = await sessions.new_session(user_id="x", data={"cart": [1]})
        loaded = await sessions.load_session(s.id)
        assert loaded == s and loaded.data == {"cart": [1]} and loaded.scope is Scope.USER

        async def expired() -> bool:
            return await sessions.load_session(s.id) is None

        await eventually(expired, what="the session to expire")


async def test_save_session_keeps_changes_and_rejects_a_bad_id(app):
    sessions = app[0]
    s = await sessions.new_session(user_id="x")
    s.data["theme"] = "dark"
    await sessions.save_session(s)
    assert (await sessions.load_session(s.id)).data == {"theme": "dark"}
    with pytest.raises(ValueError, match="session id"):
        await sessions.save_session(Session(id="a b"))


async def test_an_unreadable_session_is_dropped(app):
    sessions = app[0]
    await sessions.cache.set("_session.old", {"id": 5})  # not a Session
    assert await sessions.load_session("old") is None
    assert not await sessions.cache.exists("_session.old")


async def test_authorization_goes_to_the_authenticator(app):
    _, tokens, server = app
    body, headers = await server.handle(call("profile.orders"), {"Authorization": "Bearer alice-token"})
    assert decode(body)["result"] == ["alice", 1, 2]
    assert "Session-Id" not in headers
    body, _ = await server.handle(call("profile.whoami"), {"Authorization": "Basic eDp5"})  # not handled: guest
    assert decode(body)["result"] == {"scope": "GUEST", "user": None}


async def test_bad_credentials_answer_not_authorized(app):
    server = app[2]
    body, headers = await server.handle(call("profile.whoami", 9), {"Authorization": "Bearer stolen", "Correlation-Id": "c-1"})
    error = decode(body)
    assert error["id"] == 9 and error["error"]["code"] == -32000
    assert error["error"]["data"]["type"] == "NotAuthorized"
    assert headers["Correlation-Id"] == "c-1"
    with pytest.raises(NotAuthorized):
        await server.call("profile.whoami", headers={"Authorization": "Bearer stolen"})


async def test_a_failing_authenticator_is_an_internal_error_without_details(app):
    body, _ = await app[2].handle(call("profile.whoami"), {"Authorization": "Bearer boom"})
    error = decode(body)["error"]
    assert error["code"] == -32603 and "down" not in body.decode()


async def test_a_session_id_wins_over_authorization(app):
    sessions, tokens, server = app
    s = await sessions.new_session(user_id="sam")
    body, _ = await server.handle(call("profile.whoami"), {"Session-Id": s.id, "Authorization": "Bearer stolen"})
    assert decode(body)["result"]["user"] == "sam"
    assert tokens.calls == 0
    # a dead session id falls back to the credentials, and tells the client to drop the id
    body, headers = await server.handle(call("profile.whoami"), {"Session-Id": "dead", "Authorization": "Bearer alice-token"})
    assert decode(body)["result"]["user"] == "alice" and headers["Session-Id"] == ""


@pytest.mark.parametrize(
    "method, credentials",
    [
        ("profile.orders", {"Session-Id": "<alice>"}),
        ("profile.report", {"Session-Id": "<alice>"}),  # not hers to call: MethodNotFound
        ("profile.whoami", {"Session-Id": "dead"}),
        ("profile.orders", {"Authorization": "Bearer alice-token"}),
        ("profile.whoami", {"Authorization": "Bearer stolen"}),
        ("profile.whoami", {"Authorization": "Bearer boom"}),
        ("profile.whoami", {"Authorization": "Basic eDp5"}),
        ("profile.orders", {"Session-Id": "dead", "Authorization": "Bearer alice-token"}),
    ],
)
async def test_credentials_alone_and_with_other_kaiju_headers_get_the_same_answer(app, method, credentials):
    # credentials alone take the plain path (read and validated in one pass); any other kaiju
    # header takes the general one: a caller must not be able to tell them apart
    sessions, _, server = app
    alice = await sessions.new_session(user_id="alice", scope=Scope.USER)
    headers = {k: v.replace("<alice>", alice.id) for k, v in credentials.items()}
    await server.handle(call("profile.whoami"))  # the first request waits for the app: the general path
    plain_body, plain_headers = await server.handle(call(method, 7), {**headers, "Correlation-Id": "c-7"})
    body, general_headers = await server.handle(call(method, 7), {**headers, "Correlation-Id": "c-7", "Timeout": "30"})
    assert decode(plain_body) == decode(body) and "id" in decode(body)
    assert plain_headers == general_headers and general_headers["Correlation-Id"] == "c-7"


async def test_call_in_process_loads_the_session_from_headers(app):
    sessions, _, server = app
    s = await sessions.new_session(user_id="ian", scope=Scope.GUEST)
    assert await server.call("profile.whoami", headers={"Session-Id": s.id, "Content-Type": "application/json"}) == {"scope": "GUEST", "user": "ian"}
    assert await server.call("profile.whoami") == {"scope": "SYSTEM", "user": None}


async def test_a_session_passed_by_the_transport_is_not_replaced(app):
    _, tokens, server = app
    given = Session(id="t", user_id="transport", scope=Scope.USER)
    body, _ = await server.handle(call("profile.whoami"), {"Authorization": "Bearer stolen"}, session=given)
    assert decode(body)["result"] == {"scope": "USER", "user": "transport"}
    assert tokens.calls == 0


async def test_without_a_store_the_headers_are_ignored():
    profile, server = Profile(), RPCServer()
    async with started(profile, server):
        assert server.sessions is None and server.auth is None
        body, headers = await server.handle(call("profile.whoami"), {"Session-Id": "abc", "Authorization": "Bearer x"})
        assert decode(body)["result"] == {"scope": "GUEST", "user": None}
        assert "Session-Id" not in headers


class BrokenStore(SessionStore):
    service_name = "broken_store"

    async def start(self) -> None:
        pass

    async def load_session(self, session_id: str) -> Session | None:
        raise ConnectionError("store unreachable")


async def test_a_failing_store_is_an_internal_error():
    profile, store, server = Profile(), BrokenStore(), RPCServer()
    async with started(profile, store, server):
        body, _ = await server.handle(call("profile.whoami"), {"Session-Id": "abc"})
        assert decode(body)["error"]["data"]["type"] == "InternalError"
        assert "unreachable" not in body.decode() and "traceback" not in body.decode()
        with pytest.raises(rpc.InternalError) as info:
            await server.call("profile.whoami", headers={"Session-Id": "abc"})
        assert isinstance(info.value.base_exc, ConnectionError)


async def test_session_over_http():
    cache, sessions, profile, server = MemoryCache(), CacheSessions(), Profile(), RPCServer()
    http = HTTPServer(port=free_port())
    async with started(cache, sessions, profile, server, http):
        s = await sessions.new_session(user_id="hana")
        async with aiohttp.ClientSession() as client:
            async with client.post(http.url, data=call("profile.orders"), headers={"Session-Id": s.id, "Content-Type": "application/json"}) as resp:
                assert resp.headers["Session-Id"] == s.id
                assert decode(await resp.read())["result"] == ["hana", 1, 2]


async def test_a_refused_request_is_answered_in_its_own_shape(app):
    server, stolen = app[2], {"Authorization": "Bearer stolen"}
    batch = msgspec.json.encode([
        {"jsonrpc": "2.0", "id": 1, "method": "profile.whoami"},
        {"jsonrpc": "2.0", "method": "profile.whoami"},
        {"jsonrpc": "2.0", "id": "b", "method": "profile.whoami"},
    ])
    body, _ = await server.handle(batch, stolen)
    answers = decode(body)
    assert [a["id"] for a in answers] == [1, "b"]
    assert {a["error"]["data"]["type"] for a in answers} == {"NotAuthorized"}
    notification = msgspec.json.encode({"jsonrpc": "2.0", "method": "profile.whoami"})
    assert (await server.handle(notification, stolen)).body is None


async def test_a_dead_session_never_runs_with_more_than_guest_scope(app):
    sessions, _, server = app
    gone = await sessions.new_session(user_id="zoe", scope=Scope.SYSTEM)
    await sessions.delete_session(gone.id)
    body, _ = await server.handle(call("profile.whoami"), {"Session-Id": gone.id}, scope=Scope.SYSTEM)
    assert decode(body)["result"] == {"scope": "GUEST", "user": None}
    # credentials of a scheme nobody handles: the same
    body, _ = await server.handle(call("profile.whoami"), {"Authorization": "Basic eDp5"}, scope=Scope.SYSTEM)
    assert decode(body)["result"] == {"scope": "GUEST", "user": None}
    # and a refusal still tells the client its session id is dead
    body, headers = await server.handle(call("profile.whoami"), {"Session-Id": gone.id, "Authorization": "Bearer stolen"})
    assert decode(body)["error"]["data"]["type"] == "NotAuthorized" and headers["Session-Id"] == ""


class SlowStore(SessionStore):
    service_name = "slow_store"

    async def start(self) -> None:
        self.waiting = asyncio.Event()

    async def load_session(self, session_id: str) -> Session | None:
        self.waiting.set()
        await asyncio.sleep(30)
        return None


async def test_a_slow_lookup_is_bounded_by_the_request_deadline_and_listed_in_flight():
    profile, store, server = Profile(), SlowStore(), RPCServer()
    async with started(profile, store, server):
        pending = asyncio.ensure_future(server.handle(call("profile.whoami", 4), {"Session-Id": "abc", "Timeout": "0.2"}))
        await store.waiting.wait()
        assert len(server.executor.inflight) == 1  # stop() waits for it
        body, _ = await pending
        error = decode(body)
        assert error["id"] == 4 and error["error"]["data"]["type"] == "RequestTimeout"
        assert not server.executor.inflight


class Doors(Service):
    """Methods that log the caller in and out, as AuthService does: through the context."""

    service_name = "doors"

    async def start(self) -> None:
        pass

    @rpc.method(permission=Scope.GUEST)
    async def enter(self, user: str) -> str:
        session = await self.app.services["sessions"].new_session(user_id=user)
        current().session = session
        return session.id

    @rpc.method(permission=Scope.GUEST)
    async def leave(self) -> bool:
        current().session = None
        return True

    @rpc.method(permission=Scope.GUEST)
    async def note(self, text: str) -> None:
        current().session.data["note"] = text


@pytest.fixture
async def doors():
    cache, sessions, door, server = MemoryCache(), CacheSessions(ttl=60), Doors(), RPCServer()
    async with started(cache, sessions, door, server):
        yield sessions, server


def call_with(method: str, params: dict, rid: int = 1) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})


async def test_a_method_that_sets_the_session_answers_its_id(doors):
    sessions, server = doors
    body, headers = await server.handle(call_with("doors.enter", {"user": "una"}))  # the plain-request path
    sid = decode(body)["result"]
    assert headers["Session-Id"] == sid and (await sessions.load_session(sid)).user_id == "una"
    body, headers = await server.handle(call_with("doors.enter", {"user": "ulf"}), {"Correlation-Id": "c"})  # the general path
    assert headers["Session-Id"] == decode(body)["result"] != sid


async def test_a_method_that_clears_the_session_answers_an_empty_id(doors):
    sessions, server = doors
    s = await sessions.new_session(user_id="vic")
    body, headers = await server.handle(call("doors.leave"), {"Session-Id": s.id})
    assert decode(body)["result"] is True and headers["Session-Id"] == ""


async def test_the_stored_session_is_finished_after_the_request(doors):
    sessions, server = doors
    s = await sessions.new_session(user_id="wes")
    body, headers = await server.handle(call_with("doors.note", {"text": "hi"}), {"Session-Id": s.id})
    assert headers["Session-Id"] == s.id
    assert (await sessions.load_session(s.id)).data == {"note": "hi"}


class Recorder(SessionStore):
    service_name = "recorder"

    async def start(self) -> None:
        self.finished: list[Session] = []

    async def load_session(self, session_id: str) -> Session | None:
        return Session(id=session_id, user_id="rec", scope=Scope.USER)

    async def finish_session(self, session: Session) -> None:
        self.finished.append(session)


async def test_finish_session_is_awaited_once_per_request_with_a_stored_session():
    profile, store, tokens, server = Profile(), Recorder(), Tokens(), RPCServer()
    async with started(profile, store, tokens, server):
        await server.handle(call("profile.whoami"), {"Session-Id": "s1"})
        assert [s.id for s in store.finished] == ["s1"]
        await server.handle(call("profile.whoami"), {"Authorization": "Bearer alice-token"})  # not from the store
        await server.handle(call("profile.whoami"))
        assert [s.id for s in store.finished] == ["s1"]
