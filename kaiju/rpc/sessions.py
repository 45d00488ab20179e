"""Where the dispatcher finds a caller's session: the Session-Id and Authorization headers.

A request names its session in the `Session-Id` header, or brings credentials in the
`Authorization` header. `RPCServer` asks its `sessions` service (a `SessionStore`) for the
first, and its `auth` service (an `Authenticator`) for the second when no session was
found; the session's scope and permissions then decide what the request may call.

- `SessionStore`: the interface of a session store: `load_session(session_id)`.
- `Authenticator`: the interface of an authentication service: `authenticate(authorization)`.
- `CacheSessions`: a `SessionStore` on the app's `Cache` (memory or Redis), with a TTL.
"""

from __future__ import annotations

import abc
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from kaiju.cache.base import Cache
from kaiju.rpc.access import Scope, Session, parse_scope
from kaiju.runtime.service import Service
from kaiju.runtime.types import Positive

__all__ = ["Authenticator", "CacheSessions", "SessionStore"]

_SESSION_ID = re.compile(r"[A-Za-z0-9_\-.]{1,128}")


def _valid_id(session_id: object) -> bool:
    return type(session_id) is str and _SESSION_ID.fullmatch(session_id) is not None


class SessionStore(Service, abc.ABC):
    """A session store for `RPCServer`: subclass it and implement `load_session`.

    `RPCServer` finds one by type (or by name: `settings: {sessions: NAME}`) and calls
    `load_session` for each request that carries a `Session-Id` header.
    """

    @abc.abstractmethod
    async def load_session(self, session_id: str) -> Session | None:
        """The session with this id, or None when there is none (unknown or expired)."""

    async def finish_session(self, session: Session) -> None:
        """Called by `RPCServer` after a request whose session `load_session` gave, when the
        request is done (and still has that session): save what the methods changed in
        `session.data`. Does nothing by default."""


class Authenticator(Service, abc.ABC):
    """An authentication service for `RPCServer`: subclass it and implement `authenticate`.

    `RPCServer` finds one by type (or by name: `settings: {auth: NAME}`) and calls
    `authenticate` for each request that carries an `Authorization` header and no session.
    """

    @abc.abstractmethod
    async def authenticate(self, authorization: str) -> Session | None:
        """The caller's session for the `Authorization` header value (e.g. "Bearer ...").

        Returns None for a scheme this service does not handle (the request goes on with
        the transport's default scope); raises `kaiju.rpc.errors.NotAuthorized` for
        credentials that are wrong or expired (the request is answered with that error).
        """


class CacheSessions(SessionStore):
    """Sessions kept in the app's cache (service name "sessions").

    Settings:

    - cache: the Cache service (found by type when there is one);
    - ttl (seconds, 86400): a session expires this long after it was last saved;
    - key_prefix ("_session"): the cache key of a session is `<key_prefix>.<id>`.

    Session ids are random (`secrets.token_urlsafe`, 192 bits). With `RedisCache` the
    sessions are shared by every process of the app; with `MemoryCache` each process
    has its own.
    """

    service_name = "sessions"

    cache: Cache
    ttl: Positive = 86400.0
    key_prefix: str = "_session"

    async def start(self) -> None:
        pass

    def _key(self, session_id: str) -> str:
        return f"{self.key_prefix}.{session_id}"

    async def new_session(
        self,
        *,
        user_id: Any = None,
        scope: Scope | int | str = Scope.USER,
        permissions: Iterable[str] = (),
        data: Mapping[str, Any] | None = None,
    ) -> Session:
        """Create a session with a fresh id, save it and return it."""
        session = Session(
            id=secrets.token_urlsafe(24),
            user_id=user_id,
            scope=parse_scope(scope),
            permissions=frozenset(permissions),
            data=dict(data or {}),
        )
        await self.save_session(session)
        return session

    async def load_session(self, session_id: str) -> Session | None:
        """The stored session, or None when the id is unknown, expired or malformed."""
        if not _valid_id(session_id):
            return None
        try:
            return await self.cache.get(self._key(session_id), type=Session)
        except msgspec.ValidationError as exc:
            # written by an incompatible version: as good as gone
            self.logger.warning("unreadable session dropped", session_id=session_id, error=str(exc))
            await self.cache.delete(self._key(session_id))
            return None

    async def save_session(self, session: Session) -> None:
        """Store `session` (again), restarting its TTL."""
        if not _valid_id(session.id):
            raise ValueError(f"a session id must be 1-128 characters of A-Z a-z 0-9 _ - ., got {session.id!r}")
        await self.cache.set(self._key(session.id), session, ttl=self.ttl)

    async def delete_session(self, session_id: str) -> None:
        """Forget a session (a logout); unknown ids are ignored."""
        if _valid_id(session_id):
            await self.cache.delete(self._key(session_id))
