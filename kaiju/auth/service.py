"""AuthService: login and logout (sessions), access and refresh tokens, and the
`Authorization` header (Bearer and Basic) for every request.

    auth.login(username, password)  -> {session_id, user_id, scope, permissions}
    auth.logout()                   -> true
    auth.whoami()                   -> {user_id, scope, permissions}
    auth.token(username, password)  -> {access_token, refresh_token, token_type, expires_in}
    auth.refresh(refresh_token)     -> a new pair; the old refresh token is spent

A login's tokens form a family, kept in the cache as `<key_prefix>.family.{<id>}` for
`refresh_ttl`: every token names its family, and a token whose family is gone is refused,
so logging out or reusing a spent refresh token revokes them all at once, in every
process sharing the cache.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from typing import Any

from kaiju import keys
from kaiju.auth.passwords import Passwords
from kaiju.auth.throttle import LoginThrottle, Slot
from kaiju.auth.tokens import TokenError, TokenSigner
from kaiju.auth.users import User, UserStore
from kaiju.cache.base import Cache
from kaiju.rpc.access import Scope, Session
from kaiju.rpc.context import current
from kaiju.rpc.errors import NotAuthorized
from kaiju.rpc.methods import method
from kaiju.rpc.sessions import Authenticator, SessionStore
from kaiju.runtime.types import Positive, PositiveInt

__all__ = ["AuthService", "TokenSession"]

_WRONG = "Not authorized: wrong username or password"


class TokenSession(Session, kw_only=True):
    """The session of a request authenticated by an access token: `family` names its login."""

    family: str = ""


class AuthService(Authenticator):
    """Users log in here (service name "auth"); see the module docstring for the methods.

    Settings:

    - secret: the HS256 signing key (at least 32 characters; required for HS256);
    - algorithm ("HS256"): or "EdDSA" / "RS256" with `private_key` and `public_key` (PEM);
    - access_ttl (seconds, 900): lifetime of an access token;
    - refresh_ttl (seconds, 14 days): how long a login's tokens can be refreshed;
    - basic (true): accept `Authorization: Basic` (a password check per request);
    - max_failures (5), lockout (seconds, 300): after that many failed logins of one
      username within `lockout`, its logins are refused until the oldest failure is
      that old (see `kaiju.auth.throttle`);
    - key_prefix ("_auth"): prefix of its cache keys.

    Dependencies (by type): `users` (a UserStore), `sessions` (a SessionStore), `cache`.
    """

    service_name = "auth"

    users: UserStore
    sessions: SessionStore
    cache: Cache

    secret: str | None = None
    algorithm: str = "HS256"
    private_key: str | None = None
    public_key: str | None = None
    access_ttl: Positive = 900.0
    refresh_ttl: Positive = 14 * 86400.0
    basic: bool = True
    max_failures: PositiveInt = 5
    lockout: Positive = 300.0
    key_prefix: str = "_auth"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # a missing or weak key is a config error (kaiju-run check sees it), not a start failure
        self._signer = TokenSigner(self.algorithm, self.secret, self.private_key, self.public_key)

    async def start(self) -> None:
        # the dummy hash costs one argon2 run: made in a thread while the app goes on starting
        # (the first password check waits for it); argon2 itself is imported here, so a broken
        # install fails the start
        import argon2  # noqa: F401

        self._passwords: asyncio.Future[Passwords] = asyncio.get_running_loop().run_in_executor(None, Passwords)
        self._throttle = LoginThrottle(
            self.cache, int(self.max_failures), float(self.lockout), prefix=f"{self.key_prefix}.{keys.AUTH_FAIL}"
        )

    async def stop(self, exception: Exception | None = None) -> None:
        # an app stopped before its dummy hash was made does not wait for it
        made = getattr(self, "_passwords", None)
        if made is None or made.cancel() or made.cancelled():
            return
        if made.exception() is not None:  # retrieved here, as no login may ever have awaited it
            self.logger.error(f"cannot make the dummy password hash: {made.exception()!r}")

    # -- checks --------------------------------------------------------------

    async def check_password(self, username: str, password: str) -> User:
        """The user, when `password` is theirs and they may log in; raises NotAuthorized
        (with `data.retry_after` while the username is locked out)."""
        slot = await self._throttle.claim(username)
        if not isinstance(slot, Slot):
            raise NotAuthorized("Not authorized: too many failed logins", data={"retry_after": slot})
        user = await self.users.get_user(username)
        passwords = await self._passwords
        ok, new_hash = await passwords.verify(user.password_hash if user is not None else None, password)
        if not ok or user is None or user.disabled:
            await self._throttle.failed(slot)
            raise NotAuthorized(_WRONG)
        await self._throttle.succeeded(slot)
        if new_hash is not None:
            await self.users.set_password_hash(user, new_hash)
        return user

    async def _active_user(self, username: str) -> User:
        user = await self.users.get_user(username)
        if user is None or user.disabled:
            raise NotAuthorized("Not authorized: the user is disabled")
        return user

    async def authenticate(self, authorization: str) -> Session | None:
        """The session for a `Bearer <access token>` or (with `basic`) `Basic <base64 user:pass>`
        header; None for other schemes; raises NotAuthorized for bad credentials."""
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return await self._bearer(value.strip())
        if scheme == "basic" and self.basic:
            try:
                username, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                sep = ""
            if not sep:
                raise NotAuthorized("Not authorized: malformed Basic credentials")
            user = await self.check_password(username, password)
            return Session(id="", user_id=user.id, scope=user.scope, permissions=user.permissions)
        return None

    async def _bearer(self, token: str) -> TokenSession:
        try:
            claims = self._signer.check(token, "access")
        except TokenError as exc:
            raise NotAuthorized(f"Not authorized: {exc}") from None
        if not await self.cache.exists(self._family_key(claims["fam"])):
            raise NotAuthorized("Not authorized: the token has been revoked")
        user = await self._active_user(claims["sub"])
        return TokenSession(
            id="", user_id=user.id, scope=user.scope, permissions=user.permissions, family=claims["fam"]
        )

    # -- tokens --------------------------------------------------------------

    def _family_key(self, family: str) -> str:
        # the family's id is the hash tag: the family and its spent markers share a Cluster slot
        return f"{self.key_prefix}.{keys.AUTH_FAMILY}.{{{family}}}"

    def _pair(self, user: User, family: str, expires: float) -> dict[str, Any]:
        left = expires - time.time()
        access_ttl = min(float(self.access_ttl), left)
        access, _ = self._signer.issue(
            "access", user.username, family, access_ttl,
            scope=user.scope.name.lower(), permissions=sorted(user.permissions),
        )
        refresh, _ = self._signer.issue("refresh", user.username, family, left)
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": int(access_ttl)}

    async def revoke_family(self, family: str) -> None:
        """Revoke every token of one login (its family), in every process sharing the cache."""
        await self.cache.delete(self._family_key(family))

    # -- RPC methods -------------------------------------------------------

    @method(permission=Scope.GUEST)
    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in: start a session; the response carries its id in the Session-Id header."""
        user = await self.check_password(username, password)
        session = await self.sessions.new_session(
            user_id=user.id, scope=user.scope, permissions=user.permissions, username=user.username
        )
        ctx = current()
        if ctx is not None:
            if ctx.session is not None and ctx.session.id and not isinstance(ctx.session, TokenSession):
                await self.sessions.delete_session(ctx.session.id)  # a new login replaces the old session
            ctx.session = session
        return {
            "session_id": session.id,
            "user_id": user.id,
            "scope": user.scope.name.lower(),
            "permissions": sorted(user.permissions),
        }

    @method(permission=Scope.GUEST)
    async def logout(self) -> bool:
        """End the caller's session, or revoke the caller's token family; true."""
        ctx = current()
        session = ctx.session if ctx is not None else None
        if isinstance(session, TokenSession):
            await self.revoke_family(session.family)
        elif session is not None and session.id:
            await self.sessions.delete_session(session.id)
        if ctx is not None:
            ctx.session = None
        return True

    @method(permission=Scope.GUEST)
    async def whoami(self) -> dict[str, Any]:
        """The caller's user id (null when anonymous), scope and permissions."""
        ctx = current()
        session = ctx.session if ctx is not None else None
        scope = ctx.scope if ctx is not None else Scope.GUEST
        return {
            "user_id": session.user_id if session is not None else None,
            "scope": scope.name.lower(),
            "permissions": sorted(session.permissions) if session is not None else [],
        }

    @method(permission=Scope.GUEST)
    async def token(self, username: str, password: str) -> dict[str, Any]:
        """Log in for tokens: a signed access token (JWT) and a refresh token."""
        user = await self.check_password(username, password)
        family = secrets.token_urlsafe(16)
        expires = time.time() + float(self.refresh_ttl)
        record = {"user": user.username, "expires": expires}
        await self.cache.set(self._family_key(family), record, ttl=float(self.refresh_ttl))
        return self._pair(user, family, expires)

    @method(permission=Scope.GUEST)
    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """A new token pair for a refresh token, which is spent: presenting it again revokes
        every token of its login."""
        try:
            claims = self._signer.check(refresh_token, "refresh")
        except TokenError as exc:
            raise NotAuthorized(f"Not authorized: {exc}") from None
        family = claims["fam"]
        record = await self.cache.get(self._family_key(family))
        if record is None:
            raise NotAuthorized("Not authorized: the token has been revoked")
        # spend the token: get_or_set writes the key once, so of two racing uses only one wins
        mine = secrets.token_hex(8)
        spent_ttl = max(1.0, claims["exp"] - time.time() + 1)
        spent_key = f"{self.key_prefix}.{keys.AUTH_SPENT}.{{{family}}}.{claims['jti']}"
        if await self.cache.get_or_set(spent_key, lambda: mine, ttl=spent_ttl) != mine:
            await self.revoke_family(family)
            self.logger.warning("a spent refresh token was used again: its login is revoked", user=claims["sub"])
            raise NotAuthorized(
                "Not authorized: the refresh token was already used; every token of this login is revoked"
            )
        try:
            user = await self._active_user(claims["sub"])
        except NotAuthorized:
            await self.revoke_family(family)
            raise
        return self._pair(user, family, float(record["expires"]))
