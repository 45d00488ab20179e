"""An app serving JSON-RPC over WebSocket on a free port, with users, sessions and events."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from kaiju import rpc
from kaiju.auth.service import AuthService
from kaiju.auth.sessions import CacheSessions
from kaiju.auth.users import User, UserStore
from kaiju.cache.memory import MemoryCache
from kaiju.events.base import Events
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer, Scope
from kaiju.rpc.context import current
from kaiju.runtime.service import App, Service
from kaiju.testing.services import started
from tests.auth.support import HASHES, SECRET

TOPICS = {"news.*": "guest", "news.secret.*": "admin", "orders.*": "user"}


class Users(UserStore):
    """Users a test may disable."""

    async def start(self) -> None:
        self.users = {
            "alice": User(id="alice", username="alice", password_hash=HASHES["alice"], scope=Scope.USER),
            "carol": User(id=3, username="carol", password_hash=HASHES["carol"], scope=Scope.ADMIN),
        }

    async def get_user(self, username: str) -> User | None:
        return self.users.get(username)


class CountingSessions(CacheSessions):
    """Counts the loads of the session store."""

    loads = 0
    turns = 0  # loop turns a load takes, as a round trip to a store would

    async def load_session(self, session_id: str) -> Any:
        self.loads += 1
        for _ in range(self.turns):
            await asyncio.sleep(0)
        return await super().load_session(session_id)


class Shop(Service):
    service_name = "shop"

    async def start(self) -> None:
        self.running = self.most = 0
        self.gate = asyncio.Event()

    @rpc.method(permission=Scope.GUEST)
    async def echo(self, data: object = None) -> object:
        return data

    @rpc.method(permission=Scope.GUEST)
    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @rpc.method(permission=Scope.GUEST)
    async def hold(self) -> int:
        """Wait at the gate; returns how many calls were inside at most."""
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return self.most

    @rpc.method(permission=Scope.GUEST)
    async def context(self) -> dict:
        ctx = current()
        return {
            "transport": ctx.transport,
            "client": ctx.client,
            "correlation_id": ctx.correlation_id,
            "scope": ctx.scope.name.lower(),
            "user": ctx.session.user_id if ctx.session is not None else None,
        }

    @rpc.method(permission=Scope.USER)
    async def mine(self) -> str:
        return f"for {current().session.user_id}"

    @rpc.method(permission=Scope.USER)
    async def remember(self, value: int) -> dict:
        current().session.data["value"] = value
        return current().session.data

    @rpc.method(permission=Scope.USER)
    async def data(self) -> dict:
        return current().session.data

    @rpc.method(permission=Scope.GUEST)
    async def publish(self, topic: str, data: object = None) -> bool:
        await self.app.publish(topic, data)
        return True


def app_services(http: dict | None = None, events: bool = True, rpc_settings: dict | None = None) -> list:
    services: list = [MemoryCache(), Users(), CountingSessions(ttl=600)]
    if events:
        services.append(Events())
    services += [
        AuthService(secret=SECRET),
        Shop(),
        RPCServer(**{"topics": TOPICS, **(rpc_settings or {})}),
        HTTPServer(**{"port": 0, "shutdown_timeout": 3, **(http or {})}),
    ]
    return services


@pytest.fixture
async def make_app():
    """`async with make_app(http={...}, events=True) as app`: app.ws_url, app.url, app.client (a client
    session), app.server (the HTTPServer), app.<service name>."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(http: dict | None = None, events: bool = True, rpc_settings: dict | None = None):
        services = app_services(http, events, rpc_settings)
        async with started(*services, app=App(name="wstest", env="test")) as app:
            server = services[-1]
            base = server.url.rsplit("/", 2)[0]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                yield SimpleNamespace(
                    app=app,
                    server=server,
                    url=server.url,
                    ws_url=base.replace("http://", "ws://") + server.ws_path,
                    base=base,
                    client=client,
                    **{s.name: s for s in services if s.name != "http"},
                )

    return make


@pytest.fixture
async def app(make_app):
    async with make_app() as app:
        yield app


class Socket:
    """A test's side of one WebSocket: send requests, read answers by id and events in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.ids = 0
        self.answers: dict[Any, Any] = {}
        self.events: list[dict] = []

    async def send(self, method: str, params: Any = None, *, notify: bool = False, **extra: Any) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, **extra}
        if params is not None:
            message["params"] = params
        if not notify:
            self.ids += 1
            message["id"] = self.ids
        await self.ws.send_json(message)
        return message.get("id")

    async def read(self) -> Any:
        msg = await self.ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        data = msg.json()
        if isinstance(data, dict) and "id" not in data:
            self.events.append(data)
        return data

    async def answer(self, rid: Any) -> dict:
        while rid not in self.answers:
            data = await self.read()
            for item in data if isinstance(data, list) else [data]:
                if "id" in item:
                    self.answers[item["id"]] = item
        return self.answers.pop(rid)

    async def call(self, method: str, params: Any = None, **extra: Any) -> dict:
        return await self.answer(await self.send(method, params, **extra))

    async def event(self) -> dict:
        while not self.events:
            data = await self.read()
            if isinstance(data, dict) and "id" in data:
                self.answers[data["id"]] = data
        return self.events.pop(0)


@pytest.fixture
async def connect(app):
    opened = []

    async def connect_(headers: dict | None = None, target: Any = None) -> Socket:
        target = target or app
        ws = await target.client.ws_connect(target.ws_url, headers=headers or {})
        opened.append(ws)
        return Socket(ws)

    yield connect_
    for ws in opened:
        await ws.close()
