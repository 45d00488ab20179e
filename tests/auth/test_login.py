"""Sessions over real HTTP, on the memory and the Redis backends: login, whoami, grants,
logout, the session cookie, disabled users, and the failed-login throttle."""

from __future__ import annotations

import pytest

from kaiju.auth.users import User
from kaiju.rpc import Scope
from tests.auth.support import PASSWORDS, DictUsers


async def login(app, username="alice", password=None):
    answer, headers = await app.client.call("auth.login", {"username": username, "password": password or PASSWORDS[username]})
    return answer, headers


async def test_login_answers_the_session_and_its_header(app):
    answer, headers = await login(app)
    result = answer["result"]
    assert result == {"session_id": result["session_id"], "user_id": "alice", "scope": "user", "permissions": ["orders.*"]}
    assert headers["Session-Id"] == result["session_id"]
    sid = {"Session-Id": result["session_id"]}
    assert await app.client.result("auth.whoami", headers=sid) == {"user_id": "alice", "scope": "user", "permissions": ["orders.*"]}
    assert await app.client.result("orders.create", headers=sid) == "created for alice"  # granted by "orders.*"


async def test_anonymous_callers_are_guests(app):
    assert await app.client.result("auth.whoami") == {"user_id": None, "scope": "guest", "permissions": []}
    error = await app.client.error("orders.create")
    assert error["data"]["type"] == "MethodNotFound"


async def test_scope_and_user_id_come_from_the_user(app):
    answer, headers = await login(app, "carol")
    assert answer["result"]["user_id"] == 3 and answer["result"]["scope"] == "admin"
    error = await app.client.error("orders.create", headers={"Session-Id": headers["Session-Id"]})
    assert error["data"]["type"] == "MethodNotFound"  # admin scope, no grant for a SYSTEM method


async def test_logout_deletes_the_session(app):
    _, headers = await login(app)
    sid = {"Session-Id": headers["Session-Id"]}
    answer, out = await app.client.call("auth.logout", headers=sid)
    assert answer["result"] is True and out["Session-Id"] == ""
    answer, out = await app.client.call("auth.whoami", headers=sid)
    assert answer["result"]["user_id"] is None and answer["result"]["scope"] == "guest"
    assert out["Session-Id"] == ""
    assert await app.sessions.load_session(headers["Session-Id"]) is None


async def test_a_new_login_replaces_the_callers_session(app):
    _, first = await login(app)
    answer, second = await app.client.call(
        "auth.login", {"username": "carol", "password": PASSWORDS["carol"]}, headers={"Session-Id": first["Session-Id"]}
    )
    assert second["Session-Id"] == answer["result"]["session_id"] != first["Session-Id"]
    assert await app.sessions.load_session(first["Session-Id"]) is None


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong"), ("nobody", "wonderland"), ("bob", "builder")])
async def test_wrong_password_unknown_and_disabled_users_get_one_error(app, username, password):
    answer, headers = await login(app, username, password)
    assert answer["error"]["code"] == -32000
    assert answer["error"]["data"]["type"] == "NotAuthorized"
    assert answer["error"]["message"] == "Not authorized: wrong username or password"
    assert "Session-Id" not in headers


async def test_the_session_cookie_stands_in_for_the_header(make_app):
    async with make_app(http={"cookie_secure": False}) as app:  # plain HTTP: the jar keeps no Secure cookie
        answer, headers = await login(app)
        cookie = headers["Set-Cookie"]
        assert cookie.startswith(f"session_id={answer['result']['session_id']};")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
        # the client's jar sends the cookie back on its own
        assert (await app.client.result("auth.whoami"))["user_id"] == "alice"
        answer, headers = await app.client.call("auth.logout")
        assert answer["result"] is True
        assert 'session_id=""' in headers["Set-Cookie"]
        assert (await app.client.result("auth.whoami"))["user_id"] is None


async def test_the_cookie_is_secure_and_host_only_outside_dev(make_app):
    async with make_app() as app:  # env "test"
        answer, headers = await login(app)
        cookie = headers["Set-Cookie"]
        assert cookie.startswith(f"__Host-session_id={answer['result']['session_id']};"), cookie
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie
    async with make_app(env="dev") as app:
        _, headers = await login(app)
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("session_id=") and "Secure" not in cookie


async def test_the_cookie_name_and_flag_can_be_set_and_the_cookie_turned_off(make_app):
    async with make_app(http={"cookie_secure": True, "cookie_name": "sid"}) as app:
        _, headers = await login(app)
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("sid=") and "Secure" in cookie and "HttpOnly" in cookie
    async with make_app(http={"session_cookie": False}) as app:
        answer, headers = await login(app)
        assert "Set-Cookie" not in headers and headers["Session-Id"] == answer["result"]["session_id"]


async def test_disabling_a_user_ends_their_sessions(make_app):
    users = DictUsers()
    async with make_app(users=users) as app:
        users.users["dora"] = User(id=7, username="dora", password_hash=_hash("explorer"), scope=Scope.USER)
        _, headers = await login(app, "dora", "explorer")
        sid = {"Session-Id": headers["Session-Id"]}
        assert (await app.client.result("auth.whoami", headers=sid))["user_id"] == 7
        users.users["dora"] = User(id=7, username="dora", password_hash=_hash("explorer"), disabled=True)
        if app.remembers:  # a change made in the store alone is seen within `recheck`; announced, at once
            assert (await app.client.result("auth.whoami", headers=sid))["user_id"] == 7
            await app.auth.revoke_user("dora")
        answer, out = await app.client.call("auth.whoami", headers=sid)
        assert answer["result"]["user_id"] is None and out["Session-Id"] == ""
        assert (await login(app, "dora", "explorer"))[0]["error"]["data"]["type"] == "NotAuthorized"


async def test_a_login_rehashes_a_password_made_with_old_parameters(make_app):
    users = DictUsers()
    async with make_app(users=users) as app:
        users.users["dora"] = User(id=7, username="dora", password_hash=_hash("explorer"))
        await login(app, "dora", "explorer")
        new_hash = users.rehashed["dora"]
        assert new_hash.startswith("$argon2id$") and "m=65536" in new_hash


async def test_failed_logins_lock_the_username_out(make_app):
    async with make_app(max_failures=3, lockout=60) as app:
        for _ in range(3):
            assert (await login(app, "alice", "guess"))[0]["error"]["message"].endswith("wrong username or password")
        answer, _ = await login(app)  # the right password, refused all the same
        error = answer["error"]
        assert error["data"]["type"] == "NotAuthorized" and error["message"].endswith("too many failed logins")
        assert 0 < error["data"]["retry_after"] <= 60
        assert "result" in (await login(app, "carol"))[0]  # other usernames are not affected


async def test_the_lockout_ends_with_its_window(make_app):
    async with make_app(max_failures=2, lockout=0.5) as app:
        for _ in range(2):
            await login(app, "alice", "guess")
        error = (await login(app))[0]["error"]
        assert "retry_after" in error["data"]

        async def logged_in():
            return "result" in (await login(app))[0]

        from tests.auth.support import eventually

        await eventually(logged_in, what="a login after the lockout window")


async def test_a_success_frees_its_own_slot_only(make_app):
    async with make_app(max_failures=3, lockout=60) as app:
        for _ in range(2):
            await login(app, "alice", "guess")
        for _ in range(3):  # successes do not count, nor do they forgive the failures
            assert "result" in (await login(app))[0]
        await login(app, "alice", "guess")
        assert "retry_after" in (await login(app))[0]["error"]["data"]


async def test_parallel_logins_beyond_the_slots_are_refused_at_once_not_locked_out(make_app):
    import asyncio

    async with make_app(max_failures=2, lockout=60) as app:
        answers = [answer for answer, _ in await asyncio.gather(*(login(app) for _ in range(6)))]
        refused = [a["error"] for a in answers if "error" in a]
        assert 2 <= len(answers) - len(refused), answers  # as many as there are slots got in
        # the others were told to come back in a moment, not that the account is locked
        assert all(e["message"].endswith("try again shortly") and e["data"]["retry_after"] <= 1 for e in refused), refused
        assert "result" in (await login(app))[0]  # nothing counted against the account


def _hash(password: str) -> str:
    import argon2

    return argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(password)


@pytest.mark.parametrize("backend", ["memory"])  # the limit's stores: tests/rpc/test_rate_limits.py
async def test_logins_of_one_address_are_rate_limited_by_default(make_app):
    async with make_app(rate_limits=[]) as app:  # no rule of its own: the default one applies
        answers = [
            (await app.client.call("auth.login", {"username": "alice", "password": "wrong"}))[0] for _ in range(11)
        ]
    kinds = [a["error"]["data"]["type"] for a in answers]
    assert kinds == ["NotAuthorized"] * 10 + ["TooManyRequests"], kinds  # a burst of 10, then 30 a minute
    assert answers[-1]["error"]["data"]["retry_after"] > 0
