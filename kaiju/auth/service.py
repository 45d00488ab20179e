"""AuthService: login and logout (sessions), access and refresh tokens, and the
`Authorization` header (Bearer and Basic) for every request.

    auth.login(username, password)  -> {session_id, user_id, scope, permissions}
    auth.logout()                   -> true
    auth.whoami()                   -> {user_id, scope, permissions}
    auth.token(username, password)  -> {access_token, refresh_token, token_type, expires_in}
    auth.refresh(refresh_token)     -> a new pair; the old refresh token is spent

A login's tokens form a family, kept in the cache as `<key_prefix>.family.{<id>}` for
`refresh_ttl` with the user it belongs to: every token names its family, and a token whose
family is gone, or belongs to another user, is refused, so logging out or reusing a spent
refresh token revokes them all at once, in every process sharing the cache.

A password check passes three gates before argon2 runs (see `kaiju.auth.throttle`): the
client's limit of login attempts (per process, before anything is written), a slot of the
account's throttle (by normalised name, then by user id), and a place in the bounded pool
of hashing threads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from kaiju import keys
from kaiju.auth.known import Known
from kaiju.auth.passwords import HashPool, Passwords
from kaiju.auth.throttle import Attempt, ClientLimit, LoginThrottle, Refused, normalise_username
from kaiju.auth.tokens import TokenError, TokenSigner, weak_secret
from kaiju.auth.users import User, UserStore
from kaiju.cache.base import Cache
from kaiju.events.base import Events
from kaiju.rpc.access import Scope, Session
from kaiju.rpc.context import current
from kaiju.rpc.errors import NotAuthorized, Overloaded
from kaiju.rpc.methods import method
from kaiju.rpc.sessions import Authenticator, SessionStore
from kaiju.runtime.service import SettingError
from kaiju.runtime.types import NonNegative, NonNegativeInt, Positive, PositiveInt

__all__ = ["AuthService", "TokenSession"]

_WRONG = "Not authorized: wrong username or password"
_FAMILIES_KEPT = 4096  # token families whose user a service remembers (the oldest forgotten first)
DEV_ENV = "dev"  # the one env in which a missing secret is made up (per process) rather than refused


class TokenSession(Session, kw_only=True):
    """The session of a request authenticated by an access token: `family` names its login."""

    family: str = ""
    username: str | None = None


def _copy(session: TokenSession) -> TokenSession:
    """A request's own copy of a remembered session: what a method puts in `data` stays in its request."""
    return msgspec.structs.replace(session, data={})


class AuthService(Authenticator):
    """Users log in here (service name "auth"); see the module docstring for the methods.

    The settings are documented where each is declared, below.

    Dependencies (by type): `users` (a UserStore), `sessions` (a SessionStore), `cache`.
    """

    service_name = "auth"

    users: UserStore
    sessions: SessionStore
    cache: Cache
    events: Events | None = None
    """Announces revoked token families and users (`revoke_user`) to every process: WebSockets lose their rights
    at once, and each process may remember verified tokens (`recheck`)."""

    secret: str | None = None
    """HS256 signing key: at least 32 characters, from the environment (``"[AUTH_SECRET]"``).
    Outside env ``dev`` a missing, short, weak or published example secret stops the start;
    in ``dev`` a missing one is made up per process (tokens then die with it)."""
    secret_file: str | None = None
    """A file holding the secret instead (systemd ``LoadCredential=``: ``$CREDENTIALS_DIRECTORY/...``);
    surrounding white space is dropped."""
    algorithm: str = "HS256"
    """``HS256``, or ``EdDSA`` / ``RS256`` with `private_key` and `public_key`."""
    private_key: str | None = None
    """PEM private key that signs tokens (EdDSA, RS256)."""
    public_key: str | None = None
    """PEM public key that checks tokens (EdDSA, RS256)."""
    access_ttl: Positive = 900.0
    """Seconds an access token lives."""
    refresh_ttl: Positive = 14 * 86400.0
    """Seconds a login's tokens can be refreshed."""
    refresh_grace: NonNegative = 10.0
    """Seconds during which a spent refresh token used again gets the pair its first use got
    (a client retrying a refresh that timed out, two tabs racing); later, a reuse revokes the
    whole login. 0: every reuse revokes."""
    basic: bool = True
    """Accept ``Authorization: Basic`` (a password check per request)."""
    max_failures: PositiveInt = 5
    """Failed logins of one account that lock it out ..."""
    lockout: Positive = 300.0
    """... for this many seconds after the oldest of them."""
    client_attempts: PositiveInt = 20
    """Login attempts one client address may have pending or failed per `client_window`, in
    each process (a successful one is given back); past it, refused with ``retry_after``."""
    client_window: Positive = 60.0
    """Seconds over which `client_attempts` are counted."""
    hash_workers: PositiveInt = 2
    """Threads that check passwords: at most this many argon2 runs at once (64 MiB each)."""
    hash_queue: NonNegativeInt = 16
    """Password checks that may wait for a thread; past it a login is refused (Overloaded)."""
    key_prefix: str = "_auth"
    """Prefix of the service's cache keys."""
    recheck: NonNegative = 60.0
    """With `events`: seconds a verified access token is trusted without reading its family and
    its user again (never past its expiry); a logout, a revoked family or `revoke_user` ends
    that at once in every process. 0, or no `events`: both are read for every request."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        secret = self._read_secret()
        # made up in dev only (check() refuses it elsewhere): tokens live as long as the process
        self._made_up_secret = self.algorithm == "HS256" and not secret
        if self._made_up_secret:
            secret = secrets.token_urlsafe(48)
        self._secret = secret
        # a missing or weak key is a config error (kaiju-run check sees it), not a start failure
        self._signer = TokenSigner(self.algorithm, secret, self.private_key, self.public_key)
        self._passwords: Passwords | None = None
        self._pool: HashPool | None = None
        self._family_users: dict[str, str] = {}  # family -> its user, as read from its record once
        self._known: Known | None = None  # verified tokens (with events and recheck): see kaiju.auth.known
        self._unlisten: Callable[[], None] | None = None

    def _read_secret(self) -> str | None:
        if not self.secret_file:
            return self.secret or None
        if self.secret:
            raise SettingError("secret_file", "expected either secret or secret_file, got both")
        try:
            return Path(self.secret_file).read_text().strip() or None
        except OSError as exc:
            raise SettingError(
                "secret_file", f"expected a readable file holding the secret, got {self.secret_file} ({exc.strerror})"
            ) from None

    def check(self) -> None:
        """Refuse a refresh window shorter than an access token's life; outside env dev, a secret
        that is made up, published or weak."""
        if self.refresh_ttl < self.access_ttl:
            raise SettingError(
                "refresh_ttl", f"expected at least access_ttl ({self.access_ttl:g} s), got {self.refresh_ttl:g}"
            )
        if self.algorithm != "HS256" or self.app.env == DEV_ENV:
            return
        key = "secret_file" if self.secret_file else "secret"
        if self._made_up_secret:
            raise SettingError(
                "secret",
                f"expected a signing key of at least 32 characters (secret or secret_file) in env {self.app.env}, "
                "got none",
            )
        why = weak_secret(self._secret)
        if why:
            raise SettingError(
                key, f"expected a signing key of your own (make one: openssl rand -base64 48), got {why}"
            )

    async def start(self) -> None:
        # argon2 is imported here, so a broken install fails the start; the dummy hash costs
        # nothing (a constant), so no argon2 run happens before the first login
        self._passwords = Passwords()
        self._pool = HashPool(self.hash_workers, self.hash_queue)
        self._throttle = LoginThrottle(
            self.cache, self.max_failures, self.lockout, prefix=f"{self.key_prefix}.{keys.AUTH_FAIL}"
        )
        self._clients = ClientLimit(self.client_attempts, self.client_window)
        if self.events is not None and self.recheck > 0:
            self._known = Known()
            self._unlisten = self.events.add_listener(self._known)
        if self._made_up_secret:
            self.logger.warning(
                "no signing key given, so tokens are signed with a key made up for this process (env dev only); "
                "they end with it and other processes refuse them"
            )

    async def stop(self, exception: Exception | None = None) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = self._known = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- checks --------------------------------------------------------------

    async def check_password(self, username: str, password: str) -> User:
        """The user, when `password` is theirs and they may log in; raises NotAuthorized
        (with `data.retry_after` while the client or the account must wait) or Overloaded
        (with `data.retry_after`) when too many checks wait for a hashing thread.

        The attempt is settled however it ends: a wrong password counts as a failure, and
        an attempt cut short (its deadline, a dropped connection) counts as nothing.
        """
        ctx = current()
        client = ctx.client if ctx is not None else None
        if client is not None:
            wait = self._clients.take(client)
            if wait is not None:
                raise NotAuthorized(
                    "Not authorized: too many login attempts from this address", data={"retry_after": wait}
                )
        attempt = Attempt(self._throttle)
        failed = succeeded = False
        try:
            refused = await attempt.claim(normalise_username(username))
            user = None
            if refused is None:
                user = await self.users.get_user(username)
                if user is not None:
                    refused = await attempt.claim(f"id:{user.id!r}")
            if refused is not None:
                raise NotAuthorized(_refusal(refused), data={"retry_after": refused.retry_after})
            ok, new_hash = await self._verify(user, password)
            if not ok or user is None or user.disabled:
                failed = True
                raise NotAuthorized(_WRONG)
            succeeded = True
        finally:
            await asyncio.shield(attempt.settle(failed))
            if succeeded and client is not None:
                self._clients.give_back(client)  # only failed attempts, and those cut short, use up the limit
        if new_hash is not None:
            await self.users.set_password_hash(user, new_hash)
        return user

    async def _verify(self, user: User | None, password: str) -> tuple[bool, str | None]:
        if self._pool is None or self._passwords is None:
            raise RuntimeError(f"{self.name} is not started")
        if self._pool.full:
            raise Overloaded(
                "Overloaded: too many password checks are waiting; try again later", data={"retry_after": 1}
            )
        return await self._passwords.verify(user.password_hash if user is not None else None, password, self._pool)

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
            known = self._known
            if known is None:
                return (await self._bearer(value.strip()))[0]
            since = known.generation
            session, expires = await self._bearer(value.strip())
            tags = (("family", session.family), ("user", session.username or ""))
            known.keep(authorization.strip(), session, min(self.recheck, expires - time.time()), tags, since)
            return _copy(session)
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

    def known(self, authorization: str) -> Session | None:
        """The session of a bearer token verified less than `recheck` seconds ago and revoked
        by no notice since (see `kaiju.auth.known`); None: ask `authenticate`."""
        known = self._known
        if known is None:
            return None
        session = known.get(authorization)
        return None if session is None else _copy(session)

    async def _bearer(self, token: str) -> tuple[TokenSession, float]:
        """The token's session and its expiry (unix time); NotAuthorized when it is refused."""
        try:
            claims = self._signer.check(token, "access")
        except TokenError as exc:
            raise NotAuthorized(f"Not authorized: {exc}") from None
        family, subject = claims["fam"], claims["sub"]
        # a family's user never changes (its id is random, its record written once): learned from
        # the record once, then only its presence is asked for (a revocation deletes it)
        if self._family_users.get(family) == subject:
            if not await self.cache.exists(self._family_key(family)):
                raise NotAuthorized("Not authorized: the token has been revoked")
        else:
            await self._family(claims)
            if len(self._family_users) >= _FAMILIES_KEPT:
                del self._family_users[next(iter(self._family_users))]
            self._family_users[family] = subject
        user = await self.users.get_user(subject)
        if user is None or user.disabled:
            raise NotAuthorized("Not authorized: the user is disabled")
        session = TokenSession(
            id="",
            user_id=user.id,
            scope=user.scope,
            permissions=user.permissions,
            family=claims["fam"],
            username=user.username,
        )
        return session, claims["exp"]

    async def _family(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The record of the token's family; NotAuthorized when it is gone (revoked) or belongs
        to another user than the token names (a token forged with a leaked key)."""
        record = await self.cache.get(self._family_key(claims["fam"]))
        if type(record) is not dict or record.get("user") != claims["sub"]:
            raise NotAuthorized("Not authorized: the token has been revoked")
        return record

    # -- tokens --------------------------------------------------------------

    def _family_key(self, family: str) -> str:
        # the family's id is the hash tag: the family and its spent markers share a Cluster slot
        return f"{self.key_prefix}.{keys.AUTH_FAMILY}.{{{family}}}"

    def _pair(self, user: User, family: str, expires: float) -> dict[str, Any]:
        left = expires - time.time()
        access_ttl = min(self.access_ttl, left)
        access, _ = self._signer.issue(
            "access",
            user.username,
            family,
            access_ttl,
            scope=user.scope.name.lower(),
            permissions=sorted(user.permissions),
        )
        refresh, _ = self._signer.issue("refresh", user.username, family, left)
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": int(access_ttl)}

    async def revoke_family(self, family: str) -> None:
        """Revoke every token of one login (its family), in every process sharing the cache."""
        await self.cache.delete(self._family_key(family))
        if self.events is not None:
            await self.events.revoke("family", family)  # this process's Known forgets it first

    async def revoke_user(self, username: str) -> None:
        """Tell every process that a user lost their rights: call it when you disable or delete
        a user in your `UserStore`. Open WebSockets and remembered tokens and sessions of the
        user end at once; without it, a process that remembers them (`recheck`) sees the
        store's answer within `recheck` seconds. Without `events` there is nothing to tell:
        every request reads the store."""
        if self.events is not None:
            await self.events.revoke("user", username)

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
        expires = time.time() + self.refresh_ttl
        record = {"user": user.username, "expires": expires}
        await self.cache.set(self._family_key(family), record, ttl=self.refresh_ttl, keep=True)
        return self._pair(user, family, expires)

    @method(permission=Scope.GUEST)
    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """A new token pair for a refresh token, which is spent: presenting it again within
        `refresh_grace` seconds gives the same pair; later, it revokes every token of its login."""
        try:
            claims = self._signer.check(refresh_token, "refresh")
        except TokenError as exc:
            raise NotAuthorized(f"Not authorized: {exc}") from None
        family = claims["fam"]
        record = await self._family(claims)
        grace = self.refresh_grace
        # the family's id is the hash tag of all its keys: one Cluster slot
        pair_key = f"{self.key_prefix}.{keys.AUTH_PAIR}.{{{family}}}.{claims['jti']}"
        spent_key = f"{self.key_prefix}.{keys.AUTH_SPENT}.{{{family}}}.{claims['jti']}"
        mine = secrets.token_hex(8)
        made: dict[str, Any] = {}

        async def spend() -> dict[str, Any]:
            # runs once for all racing uses (get_or_set writes the key once, across processes too)
            user = await self._active_user(claims["sub"])
            made.update(self._pair(user, family, float(record["expires"])))
            if grace > 0:
                await self.cache.set(pair_key, made, ttl=grace, keep=True)
            return {"by": mine, "at": time.time()}

        spent_ttl = max(1.0, claims["exp"] - time.time() + 1)
        try:
            spent = await self.cache.get_or_set(spent_key, spend, ttl=spent_ttl, keep=True)
        except NotAuthorized:
            await self.revoke_family(family)  # its user is gone or disabled
            raise
        if spent["by"] == mine:
            return made
        if time.time() - float(spent["at"]) <= grace:
            pair = await self.cache.get(pair_key)
            if pair is not None:
                return pair
        await self.revoke_family(family)
        self.logger.warning("a spent refresh token was used again: its login is revoked", user=claims["sub"])
        raise NotAuthorized("Not authorized: the refresh token was already used; every token of this login is revoked")

    # -- kaiju-tools' names, for its clients (RPCServer kaiju_tools_requests: true) ----------

    @method(name="jwt.get", permission=Scope.GUEST, kaiju_tools=True)
    async def jwt_get(self, username: str, password: str) -> dict[str, Any]:
        """kaiju-tools' `auth.jwt.get`: `auth.token`, answered with its keys too (`access`, `refresh`)."""
        return _old_keys(await self.token(username, password))

    @method(name="jwt.refresh", permission=Scope.GUEST, kaiju_tools=True)
    async def jwt_refresh(self, refresh: str, access: str | None = None) -> dict[str, Any]:
        """kaiju-tools' `auth.jwt.refresh`: `auth.refresh` with its params and keys."""
        return _old_keys(await self.refresh(refresh))


def _old_keys(pair: dict[str, Any]) -> dict[str, Any]:
    return {"access": pair["access_token"], "refresh": pair["refresh_token"], **pair}


def _refusal(refused: Refused) -> str:
    if refused.locked:
        return "Not authorized: too many failed logins"
    return "Not authorized: other logins of this account are being checked; try again shortly"
