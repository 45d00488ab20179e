"""Access and refresh tokens over real HTTP, on the memory and the Redis backends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kaiju.auth.tokens import TokenError, TokenSigner
from tests.auth.support import PASSWORDS, SECRET, basic, bearer


async def refused(error) -> bool:
    """Whether the awaited error answer is NotAuthorized."""
    return (await error)["data"]["type"] == "NotAuthorized"


async def tokens(app, username="alice"):
    return await app.client.result("auth.token", {"username": username, "password": PASSWORDS[username]})


async def test_token_answers_a_signed_pair(app):
    pair = await tokens(app)
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900
    claims = jwt.decode(pair["access_token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["scope"] == "user" and claims["permissions"] == ["orders.*"]
    assert claims["exp"] - claims["iat"] == 900 and claims["jti"]
    assert jwt.get_unverified_header(pair["access_token"])["alg"] == "HS256"


async def test_a_bearer_token_authenticates_one_request(app):
    pair = await tokens(app)
    answer, headers = await app.client.call("auth.whoami", headers=bearer(pair["access_token"]))
    assert answer["result"] == {"user_id": "alice", "scope": "user", "permissions": ["orders.*"]}
    assert "Session-Id" not in headers
    assert await app.client.result("orders.create", headers=bearer(pair["access_token"])) == "created for alice"
    assert (await app.client.result("auth.whoami"))["user_id"] is None  # nothing carried over


def _forge(token: str, **changes) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{sig}"


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _none_alg(token: str) -> str:
    claims = _claims(token)
    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}."


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda t: _forge(t, scope="system", sub="carol"), id="tampered"),
        pytest.param(_none_alg, id="alg-none"),
        pytest.param(lambda t: jwt.encode(_claims(t), "another-secret-of-at-least-32-chars!", algorithm="HS256"), id="wrong-key"),
        pytest.param(lambda t: jwt.encode({**_claims(t), "exp": int(time.time()) - 10}, SECRET, algorithm="HS256"), id="expired"),
        pytest.param(lambda t: "not.a.token", id="garbage"),
    ],
)
async def test_bad_tokens_are_not_authorized(app, bad):
    pair = await tokens(app)
    error = await app.client.error("auth.whoami", headers=bearer(bad(pair["access_token"])))
    assert error["code"] == -32000 and error["data"]["type"] == "NotAuthorized"


async def test_a_refresh_token_is_no_access_token(app):
    pair = await tokens(app)
    error = await app.client.error("auth.whoami", headers=bearer(pair["refresh_token"]))
    assert error["data"]["type"] == "NotAuthorized"
    error = await app.client.error("auth.refresh", {"refresh_token": pair["access_token"]})
    assert error["data"]["type"] == "NotAuthorized"


async def test_refresh_rotates_and_reuse_revokes_the_family(make_app):
    async with make_app(refresh_grace=0) as app:
        await _rotates_and_reuse_revokes(app)


async def _rotates_and_reuse_revokes(app):
    first = await tokens(app)
    second = await app.client.result("auth.refresh", {"refresh_token": first["refresh_token"]})
    assert second["refresh_token"] != first["refresh_token"]
    third = await app.client.result("auth.refresh", {"refresh_token": second["refresh_token"]})
    assert (await app.client.result("auth.whoami", headers=bearer(third["access_token"])))["user_id"] == "alice"
    # the spent first refresh token comes back (stolen): the whole login is revoked
    error = await app.client.error("auth.refresh", {"refresh_token": first["refresh_token"]})
    assert error["data"]["type"] == "NotAuthorized" and "already used" in error["message"]
    for access in (first["access_token"], second["access_token"], third["access_token"]):
        assert await refused(app.client.error("auth.whoami", headers=bearer(access)))
    assert await refused(app.client.error("auth.refresh", {"refresh_token": third["refresh_token"]}))
    # another login of the same user is another family: untouched
    other = await tokens(app)
    assert (await app.client.result("auth.whoami", headers=bearer(other["access_token"])))["user_id"] == "alice"


async def test_racing_uses_of_one_refresh_token_all_get_the_one_new_pair(app):
    pair = await tokens(app)
    refresh = {"refresh_token": pair["refresh_token"]}
    answers = await asyncio.gather(*(app.client.call("auth.refresh", refresh) for _ in range(4)))
    results = [answer.get("result") for answer, _ in answers]
    assert results[0] is not None and all(r == results[0] for r in results), answers
    # a client that retries a refresh that timed out gets the same pair too, and keeps its login
    assert await app.client.result("auth.refresh", refresh) == results[0]
    assert (await app.client.result("auth.whoami", headers=bearer(results[0]["access_token"])))["user_id"] == "alice"


async def test_racing_uses_without_a_grace_window_revoke_the_login(make_app):
    async with make_app(refresh_grace=0) as app:
        pair = await tokens(app)
        refresh = {"refresh_token": pair["refresh_token"]}
        answers = await asyncio.gather(*(app.client.call("auth.refresh", refresh) for _ in range(4)))
        assert sum("result" in answer for answer, _ in answers) == 1
        assert await refused(app.client.error("auth.whoami", headers=bearer(pair["access_token"])))


async def test_logout_with_a_token_revokes_its_family(app):
    pair = await tokens(app)
    assert await app.client.result("auth.logout", headers=bearer(pair["access_token"])) is True
    assert await refused(app.client.error("auth.whoami", headers=bearer(pair["access_token"])))
    assert await refused(app.client.error("auth.refresh", {"refresh_token": pair["refresh_token"]}))


async def test_tokens_of_a_disabled_user_stop_working(make_app):
    from kaiju.auth.users import User
    from kaiju.rpc import Scope
    from tests.auth.support import DictUsers
    from tests.auth.test_login import _hash

    users = DictUsers()
    async with make_app(users=users) as app:
        users.users["dora"] = User(id=7, username="dora", password_hash=_hash("explorer"), scope=Scope.USER)
        pair = await app.client.result("auth.token", {"username": "dora", "password": "explorer"})
        assert (await app.client.result("auth.whoami", headers=bearer(pair["access_token"])))["user_id"] == 7
        users.users["dora"] = User(id=7, username="dora", password_hash=_hash("explorer"), disabled=True)
        if app.remembers:  # a change made in the store alone is seen within `recheck`; announced, at once
            assert (await app.client.result("auth.whoami", headers=bearer(pair["access_token"])))["user_id"] == 7
            await app.auth.revoke_user("dora")
        assert await refused(app.client.error("auth.whoami", headers=bearer(pair["access_token"])))
        assert await refused(app.client.error("auth.refresh", {"refresh_token": pair["refresh_token"]}))


async def test_basic_authentication(app):
    assert (await app.client.result("auth.whoami", headers=basic("alice", PASSWORDS["alice"])))["user_id"] == "alice"
    for headers in (basic("alice", "nope"), basic("nobody", "x"), {"Authorization": "Basic !!!"}):
        assert await refused(app.client.error("auth.whoami", headers=headers))


async def test_basic_can_be_turned_off(make_app):
    async with make_app(basic=False) as app:
        # an unhandled scheme: the request goes on as a guest
        assert (await app.client.result("auth.whoami", headers=basic("alice", PASSWORDS["alice"])))["user_id"] is None


def _pem_pair(private_key) -> tuple[str, str]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [("EdDSA", ed25519.Ed25519PrivateKey.generate), ("RS256", lambda: rsa.generate_private_key(65537, 2048))],
)
def test_key_pair_algorithms_sign_and_check(algorithm, make_key):
    private, public = _pem_pair(make_key())
    signer = TokenSigner(algorithm, private_key=private, public_key=public)
    token, claims = signer.issue("access", "alice", "fam", 60, scope="user")
    assert signer.check(token, "access")["sub"] == "alice"
    other_private, other_public = _pem_pair(make_key())
    with pytest.raises(TokenError):
        TokenSigner(algorithm, private_key=other_private, public_key=other_public).check(token, "access")
    for secret in _public_key_forms(public):  # alg confusion: an HS256 token with the public key as its HMAC secret
        with pytest.raises(TokenError):
            signer.check(_hs256(claims, secret), "access")


def _public_key_forms(public: str) -> list[bytes]:
    """The public PEM as an attacker would use it as an HMAC secret: whole, trimmed, its base64
    body without the armour lines (with and without line breaks), and the DER bytes."""
    lines = public.strip().splitlines()
    body = lines[1:-1]
    return [
        public.encode(), public.strip().encode(), "\n".join(body).encode(), "".join(body).encode(),
        base64.b64decode("".join(body)),
    ]


def _hs256(claims: dict, secret: bytes) -> str:
    """A JWT signed HS256 with `secret`, by hand: PyJWT refuses a PEM as an HMAC key."""
    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(json.dumps(claims).encode())
    return (signing_input + b"." + part(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "secret"),
        ({"secret": "short"}, "at least 32"),
        ({"algorithm": "EdDSA"}, "key pair"),
        ({"algorithm": "none", "secret": SECRET}, "algorithm"),
        ({"algorithm": "RS256", "private_key": "x", "public_key": "y"}, "expected a PEM key pair"),
    ],
)
def test_bad_key_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TokenSigner(**settings)


async def test_kaiju_tools_clients_get_their_jwt_methods_in_compatibility_mode():
    from kaiju.auth.service import AuthService
    from kaiju.auth.users import ConfigUsers
    from kaiju.cache.memory import MemoryCache
    from kaiju.rpc import RPCServer, Scope
    from kaiju.rpc.errors import MethodNotFound
    from kaiju.auth.sessions import CacheSessions
    from kaiju.testing.services import started
    from tests.auth.support import SECRET, USERS

    for compat in (False, True):
        rpc = RPCServer(kaiju_tools_requests=compat)
        async with started(MemoryCache(), CacheSessions(), ConfigUsers(users=USERS), AuthService(secret=SECRET), rpc):
            params = {"username": "alice", "password": "wonderland"}
            if not compat:
                with pytest.raises(MethodNotFound):
                    await rpc.call("auth.jwt.get", params, scope=Scope.GUEST)
                continue
            old = await rpc.call("auth.jwt.get", params, scope=Scope.GUEST)
            assert old["access"] == old["access_token"] and old["refresh"] == old["refresh_token"]
            renewed = await rpc.call("auth.jwt.refresh", {"access": old["access"], "refresh": old["refresh"]}, scope=Scope.GUEST)
            assert renewed["refresh"] != old["refresh"]
