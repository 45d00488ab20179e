"""What the auth tests share: users, services of the test app, an HTTP JSON-RPC client,
and `eventually`."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from typing import Any

import aiohttp
import argon2
import msgspec

from kaiju import rpc
from kaiju.auth.users import User, UserStore
from kaiju.rpc import Scope
from kaiju.rpc.context import current
from kaiju.runtime.service import Service

SECRET = "test-secret-that-is-long-enough-for-hs256"
# cheap parameters keep the tests quick; AuthService rehashes them on login (ConfigUsers keeps none)
_cheap = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "christmas"}
HASHES = {name: _cheap.hash(pw) for name, pw in PASSWORDS.items()}
USERS = {
    "alice": {"password_hash": HASHES["alice"], "scope": "user", "permissions": ["orders.*"]},
    "bob": {"password_hash": HASHES["bob"], "scope": "user", "disabled": True},
    "carol": {"password_hash": HASHES["carol"], "id": 3, "scope": "admin"},
}


class Orders(Service):
    """Methods for the grants and the session data of the tests."""

    service_name = "orders"

    async def start(self) -> None:
        self.arrived = 0  # requests waiting at the gate
        self.gate = asyncio.Event()

    @rpc.method  # SYSTEM: callable only through a permission such as "orders.*"
    async def create(self) -> str:
        return f"created for {current().session.user_id}"

    @rpc.method(permission=Scope.USER)
    async def put(self, key: str, value: Any = True, wait: bool = False) -> dict:
        """Set one key of the session's data; with `wait`, only once the test opens the gate."""
        session = current().session
        if wait:
            self.arrived += 1
            await self.gate.wait()
        session.data[key] = value
        return session.data

    @rpc.method(permission=Scope.USER)
    async def drop(self, key: str) -> dict:
        current().session.data.pop(key, None)
        return current().session.data

    @rpc.method(permission=Scope.USER)
    async def cart(self) -> dict:
        return current().session.data


class DictUsers(UserStore):
    """A UserStore over a dict, which a test changes while the app runs."""

    async def start(self) -> None:
        self.users: dict[str, User] = {}
        self.rehashed: dict[str, str] = {}

    async def get_user(self, username: str) -> User | None:
        return self.users.get(username)

    async def set_password_hash(self, user: User, password_hash: str) -> None:
        self.rehashed[user.username] = password_hash


class Client:
    """JSON-RPC over HTTP to one server; remembers nothing between calls but the cookie jar."""

    def __init__(self, http: aiohttp.ClientSession, url: str):
        self.http, self.url = http, url
        self._ids = itertools.count(1)

    async def call(self, method: str, params: Any = None, headers: dict | None = None) -> tuple[dict, Any]:
        body: dict = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            body["params"] = params
        headers = {"Content-Type": "application/json", **(headers or {})}
        async with self.http.post(self.url, data=msgspec.json.encode(body), headers=headers) as resp:
            return msgspec.json.decode(await resp.read()), resp.headers

    async def result(self, method: str, params: Any = None, headers: dict | None = None) -> Any:
        answer, _ = await self.call(method, params, headers)
        assert "result" in answer, answer
        return answer["result"]

    async def error(self, method: str, params: Any = None, headers: dict | None = None) -> dict:
        answer, _ = await self.call(method, params, headers)
        assert "error" in answer, answer
        return answer["error"]


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def eventually(check: Any, timeout: float = 20.0, what: str = "the condition") -> Any:
    """Await `check()` until it returns a true value; fail loudly, naming `what`, at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (OSError, aiohttp.ClientError, AssertionError) as exc:
            last = exc
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")
