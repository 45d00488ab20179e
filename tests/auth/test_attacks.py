"""Attacks on login, tokens and sessions, replayed against running apps; each test is named
after the defence that refuses or bounds the attack (docs/auth.rst, "Threat model").

The first two run a real `kaiju-run` process; the others an app serving HTTP on a free port,
on the memory backends and, where the state is shared, on Redis too.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest
from argon2 import PasswordHasher

from kaiju.auth.service import AuthService
from kaiju.auth.users import User
from kaiju.cache.memory import MemoryCache
from kaiju.locks.memory import MemoryLocks
from kaiju.rpc import Scope
from kaiju.rpc.errors import NotAuthorized
from kaiju.runtime.service import App
from kaiju.testing import eventually, free_port
from kaiju.testing.services import started
from tests.auth.conftest import app_services
from tests.auth.support import HASHES, PASSWORDS, SECRET, Client, DictUsers, bearer
from tests.runtime.test_cli import finish, kaiju

JSON = {"Content-Type": "application/json"}


def login_body(username: str, password: str, rid: int = 1) -> bytes:
    params = {"username": username, "password": password}
    return msgspec.json.encode({"jsonrpc": "2.0", "id": rid, "method": "auth.login", "params": params})


# -- as a real process ---------------------------------------------------------------


# argon2-cffi's own parameters (what a real app stores): a check takes tens of milliseconds,
# so a login cut short after 5 ms is cut in the middle of it
REAL_HASH = PasswordHasher().hash("wonderland")


def process_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "app.yml"
    path.write_text(
        "main: {name: attacked, env: prod}\n"
        "services:\n"
        "  - cls: RPCServer\n"
        f"  - cls: HTTPServer\n    settings: {{port: {port}}}\n"
        "  - cls: MemoryCache\n  - cls: MemoryLocks\n  - cls: CacheSessions\n"
        "  - cls: ConfigUsers\n    settings:\n      users:\n"
        f"        alice: {{password_hash: '{REAL_HASH}'}}\n"
        f"        carol: {{password_hash: '{HASHES['carol']}', scope: admin}}\n"
        f"  - cls: AuthService\n    settings: {{secret: {SECRET}}}\n"
        "  - cls: tests.auth.attack_app:Slow\n"
    )
    return path


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict | None = None) -> dict:
    async with session.post(url, data=body, headers={**JSON, **(headers or {})}) as resp:
        assert resp.status == 200, await resp.text()
        return msgspec.json.decode(await resp.read())


async def answering(session: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with session.get(f"http://127.0.0.1:{port}/health/live") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


@pytest.mark.parametrize("interrupt", ["timeout header", "dropped connection"])
async def test_interrupted_logins_right_after_start_leave_every_later_login_working(tmp_path, interrupt):
    port = free_port()
    url = f"http://127.0.0.1:{port}/public/rpc"
    proc = kaiju("-c", str(process_config(tmp_path, port)), "--log-format", "plain")
    try:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: answering(session, port), timeout=30, what="the app to answer")

            async def interrupted() -> None:
                # as soon as it answers: five logins of one user, cut short after 5 ms
                if interrupt == "timeout header":
                    answer = await post(session, url, login_body("alice", "wrong"), {"Timeout": "0.005"})
                    assert answer["error"]["data"]["type"] in ("RequestTimeout", "NotAuthorized"), answer
                    return
                try:
                    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.005)) as hasty:
                        await hasty.post(url, data=login_body("alice", "wrong"), headers=JSON)
                except (TimeoutError, aiohttp.ClientError):
                    pass

            await asyncio.gather(*(interrupted() for _ in range(5)))
            # another user logs in, and the interrupted user's right password still works:
            # nothing was cancelled for good, and interrupted attempts count as nothing
            for user in ("carol", "alice"):
                answer = await post(session, url, login_body(user, PASSWORDS[user]))
                assert answer.get("result", {}).get("user_id") == user, answer
            token = await post(session, url, msgspec.json.encode(
                {"jsonrpc": "2.0", "id": 2, "method": "auth.token", "params": {"username": "carol", "password": "christmas"}}
            ))
            assert "access_token" in token["result"], token
    finally:
        proc.terminate()
        code, err = finish(proc)
    assert code == 0, err
    assert "Traceback" not in err, err


async def test_a_cancelled_loader_keeps_running_for_its_other_waiters(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/public/rpc"
    call = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "slow.value"})
    proc = kaiju("-c", str(process_config(tmp_path, port)), "--log-format", "plain")
    try:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: answering(session, port), timeout=30, what="the app to answer")
            # the first caller starts the load and gives up after 50 ms; the second waits for it
            first = asyncio.ensure_future(post(session, url, call, {"Timeout": "0.05"}))
            await asyncio.sleep(0.01)
            second = asyncio.ensure_future(post(session, url, call, {"Timeout": "30"}))
            assert (await first)["error"]["data"]["type"] == "RequestTimeout"
            assert (await second)["result"] == "loaded"
            count = msgspec.json.encode({"jsonrpc": "2.0", "id": 2, "method": "slow.load_count"})
            assert (await post(session, url, count))["result"] == 1  # one load, shared: not restarted
    finally:
        proc.terminate()
        code, err = finish(proc)
    assert code == 0, err


# -- against an app serving HTTP --------------------------------------------------------


async def login(app, username: str = "alice", password: str | None = None, headers: dict | None = None):
    return await app.client.call("auth.login", {"username": username, "password": password or PASSWORDS[username]}, headers)


class SlowUsers(DictUsers):
    """A store that takes its time (a database under load): a login cut short after 5 ms is
    cut before its verdict."""

    async def get_user(self, username: str) -> User | None:
        await asyncio.sleep(0.05)
        return self.users.get(username)


async def test_interrupted_logins_neither_lock_the_account_nor_park_requests(make_app):
    users = SlowUsers()
    async with make_app(users=users, max_failures=5, lockout=300) as app:
        users.users["alice"] = User(id=1, username="alice", password_hash=HASHES["alice"], scope=Scope.USER)
        for _ in range(5):
            answer, _ = await login(app, "alice", "wrong", {"Timeout": "0.005"})
            assert answer["error"]["data"]["type"] == "RequestTimeout", answer
        answer, _ = await login(app)
        assert "result" in answer, answer  # nothing counted against alice
        # many logins racing for alice's slots are refused at once, never parked: a guest
        # call made meanwhile is served within a deadline the parked ones used to outlast
        logins = [asyncio.ensure_future(login(app, "alice", "wrong")) for _ in range(140)]
        whoami, _ = await app.client.call("auth.whoami", headers={"Timeout": "5"})
        assert whoami.get("result", {}).get("scope") == "guest", whoami
        answers = [a for a, _ in await asyncio.gather(*logins)]
        assert all(a["error"]["data"]["type"] == "NotAuthorized" for a in answers), answers
        executor = app.auth.app.services["rpc"].executor
        assert not executor.inflight and executor.slots.free == executor.slots.size


async def test_a_token_forged_for_another_user_with_the_key_is_refused(app):
    import jwt

    pair = await app.client.result("auth.token", {"username": "alice", "password": "wonderland"})
    family = jwt.decode(pair["access_token"], options={"verify_signature": False})["fam"]
    now = int(time.time())
    forged = {"sub": "carol", "iat": now, "exp": now + 600, "jti": "x", "typ": "access", "fam": family,
              "scope": "system", "permissions": ["*"]}
    token = jwt.encode(forged, SECRET, algorithm="HS256")
    error = await app.client.error("orders.create", headers=bearer(token))  # a system method
    assert error["data"]["type"] in ("NotAuthorized", "MethodNotFound") and "revoked" in error["message"], error
    assert (await app.client.error("auth.whoami", headers=bearer(token)))["data"]["type"] == "NotAuthorized"
    refresh = jwt.encode({**forged, "typ": "refresh", "jti": "y"}, SECRET, algorithm="HS256")
    error = await app.client.error("auth.refresh", {"refresh_token": refresh})
    assert error["data"]["type"] == "NotAuthorized", error
    # alice's own tokens still work: the forgery revoked nothing
    assert (await app.client.result("auth.whoami", headers=bearer(pair["access_token"])))["user_id"] == "alice"


@pytest.mark.parametrize("client_attempts", [1000, 20])
async def test_a_flood_of_new_usernames_evicts_no_session_token_or_lockout(client_attempts):
    services = app_services(
        [MemoryCache(max_size=50), MemoryLocks()], max_failures=3, lockout=300, client_attempts=client_attempts,
    )
    async with started(*services, app=App(name="flood", env="test")):
        http, cache = services[-1], services[0]
        async with aiohttp.ClientSession() as session:
            client = Client(session, http.url)
            sid = (await client.result("auth.login", {"username": "alice", "password": "wonderland"}))["session_id"]
            pair = await client.result("auth.token", {"username": "alice", "password": "wonderland"})
            for _ in range(3):
                await client.error("auth.login", {"username": "carol", "password": "guess"})
            flood = [client.call("auth.login", {"username": secrets.token_hex(8), "password": "x"}, {"Timeout": "0.01"})
                     for _ in range(400)]
            answers = [a for a, _ in await asyncio.gather(*flood)]
            if client_attempts == 20:  # the client's limit stops it before anything is written
                limited = [a for a in answers if "from this address" in a["error"]["message"]]
                assert len(limited) >= 380 and all(a["error"]["data"]["retry_after"] > 0 for a in limited)
                assert len(cache) < 50
            assert (await client.result("auth.whoami", headers={"Session-Id": sid}))["user_id"] == "alice"
            assert (await client.result("auth.whoami", headers=bearer(pair["access_token"])))["user_id"] == "alice"
        # carol is still locked out (asked in-process: this client is over its own limit by now)
        with pytest.raises(NotAuthorized, match="too many failed logins"):
            await services[-2].call("auth.login", {"username": "carol", "password": "christmas"}, scope=Scope.GUEST)


class LooseUsers(DictUsers):
    """A store matching names without regard to case (a citext column, `lower()`)."""

    async def get_user(self, username: str) -> User | None:
        return self.users.get(username.lower())


async def test_every_spelling_of_a_name_counts_against_one_account(make_app):
    users = LooseUsers()
    async with make_app(users=users, max_failures=5, lockout=300, client_attempts=1000) as app:
        users.users["alice"] = User(id=1, username="alice", password_hash=HASHES["alice"], scope=Scope.USER)
        spellings = ["".join(c.upper() if bit & (1 << i) else c for i, c in enumerate("alice")) for bit in range(32)]
        verdicts = []
        for name in spellings:
            verdicts.append((await login(app, name, "guess"))[0]["error"]["message"])
        assert sum(v.endswith("wrong username or password") for v in verdicts) == 5, verdicts
        assert all(v.endswith("too many failed logins") for v in verdicts[5:]), verdicts
        error = (await login(app, "ALICE", "wonderland"))[0]["error"]
        assert error["message"].endswith("too many failed logins")


async def test_a_batch_of_logins_buys_no_more_checks_than_the_client_limit(make_app):
    async with make_app(client_attempts=10) as app:
        batch = [{"jsonrpc": "2.0", "id": n, "method": "auth.login", "params": {"username": f"u{n}", "password": "x"}}
                 for n in range(100)]
        async with app.http.post(app.url, data=msgspec.json.encode(batch), headers=JSON) as resp:
            answers = msgspec.json.decode(await resp.read())
        messages = [a["error"]["message"] for a in answers]
        assert sum(m.endswith("wrong username or password") for m in messages) <= 10, messages
        assert sum(m.endswith("too many login attempts from this address") for m in messages) >= 90, messages


async def test_password_checks_beyond_the_hashing_pool_are_refused_at_once(make_app):
    async with make_app(client_attempts=1000, hash_workers=1, hash_queue=2) as app:
        batch = [{"jsonrpc": "2.0", "id": n, "method": "auth.login", "params": {"username": f"u{n}", "password": "x"}}
                 for n in range(20)]
        async with app.http.post(app.url, data=msgspec.json.encode(batch), headers=JSON) as resp:
            answers = msgspec.json.decode(await resp.read())
        types = [a["error"]["data"]["type"] for a in answers]
        assert set(types) <= {"NotAuthorized", "Overloaded"} and "Overloaded" in types, types
        assert all(a["error"]["data"]["retry_after"] == 1 for a in answers if a["error"]["data"]["type"] == "Overloaded")


async def test_a_cross_site_form_with_the_cookie_runs_nothing(make_app):
    async with make_app(http={"cookie_secure": False}) as app:
        await login(app)  # the victim's browser holds the session cookie
        body = b'{"jsonrpc":"2.0","id":1,"method":"orders.cart","pad":"=x"}'
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"Content-Type": content_type} if content_type else {}
            async with app.http.post(app.url, data=body, headers=headers, skip_auto_headers=["Content-Type"]) as resp:
                assert resp.status == 415 and "result" not in await resp.text()
        # a JSON call from another origin's page is refused too; the server's own origin is served
        host = app.url.split("/")[2]
        for origin, site, status in [("https://evil.example", None, 403), (None, "cross-site", 403),
                                     ("null", None, 403), (f"http://{host}", None, 200), (None, "same-origin", 200)]:
            headers = {**JSON, **({"Origin": origin} if origin else {}), **({"Sec-Fetch-Site": site} if site else {})}
            async with app.http.post(app.url, data=body, headers=headers) as resp:
                assert resp.status == status, (origin, site, await resp.text())


async def test_a_login_posted_cross_site_sets_no_cookie(make_app):
    async with make_app(http={"cookie_secure": False}) as app:
        async with app.http.post(app.url, data=login_body("carol", "christmas"), headers={"Content-Type": "text/plain"},
                                 skip_auto_headers=["Content-Type"]) as resp:
            assert resp.status == 415 and "Set-Cookie" not in resp.headers
        headers = {**JSON, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        async with app.http.post(app.url, data=login_body("carol", "christmas"), headers=headers) as resp:
            assert resp.status == 403 and "Set-Cookie" not in resp.headers
        assert (await app.client.result("auth.whoami"))["user_id"] is None


async def test_a_listed_origin_may_use_the_cookie(make_app):
    async with make_app(http={"cookie_secure": False, "origins": ["https://app.example.com"]}) as app:
        await login(app)
        headers = {**JSON, "Origin": "https://app.example.com", "Sec-Fetch-Site": "cross-site"}
        body = b'{"jsonrpc":"2.0","id":1,"method":"auth.whoami"}'
        async with app.http.post(app.url, data=body, headers=headers) as resp:
            assert resp.status == 200 and msgspec.json.decode(await resp.read())["result"]["user_id"] == "alice"


async def test_the_published_example_secret_and_none_are_refused_outside_dev():
    from kaiju.runtime.service import SettingError

    for secret in ("change-this-example-secret-to-32-chars-or-more", None):
        service = AuthService(secret=secret, app=App(name="t", env="prod"))
        with pytest.raises(SettingError) as info:
            service.check()
        assert info.value.key == "secret"
