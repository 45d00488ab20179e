"""`CacheSessions`: the built-in session store, on the app's cache (memory or Redis).

A `SessionStore` (`kaiju.rpc.sessions`) with a sliding TTL: a request's changes to
`session.data` are saved when it ends, merged key by key with the changes of concurrent
requests of the same session. A session made by a login follows its user (with a
`UserStore`): it is dropped as soon as the user is gone or disabled.

With an `Events` service, a process remembers the sessions it loaded for `recheck` seconds
(`known`, `kaiju.auth.known`): every write and delete of a session, and `revoke_user`,
is announced, so no process goes on with a copy that changed.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from kaiju.auth.known import Known
from kaiju.auth.users import UserStore
from kaiju.cache.base import Cache
from kaiju.events.base import Events
from kaiju.locks.base import Locks
from kaiju.rpc.access import Session
from kaiju.rpc.sessions import SessionStore, session_fields
from kaiju.runtime.types import NonNegative, Positive

__all__ = ["CacheSessions", "StoredSession"]

_SESSION_ID = re.compile(r"[A-Za-z0-9_\-.]{1,128}")


def _remember(session: StoredSession, data: bytes) -> None:
    """Keep `session.data` as it was loaded or saved (encoded) with the session, beside its
    fields (a `dict=True` Struct): what `finish_session` compares against. Never stored."""
    session.__dict__["_loaded"] = data


def _remembered(session: StoredSession) -> bytes | None:
    return session.__dict__.get("_loaded")


def _valid_id(session_id: object) -> bool:
    return type(session_id) is str and _SESSION_ID.fullmatch(session_id) is not None


class StoredSession(Session, kw_only=True, dict=True):
    """A `Session` as `CacheSessions` stores it: with the user's name (when a login made it),
    a version counting its saves, and when it was last saved (unix time)."""

    username: str | None = None
    version: int = 0
    saved_at: float = 0.0


class CacheSessions(SessionStore):
    """Sessions kept in the app's cache (service name "sessions").

    The settings are documented where each is declared, below.

    Session ids are random (`secrets.token_urlsafe`, 192 bits). With `RedisCache` the
    sessions are shared by every process of the app; with `MemoryCache` each process
    has its own. Sessions are written with `keep=True`: other cache traffic never evicts
    them (they go when they expire or at a logout).

    Concurrency rule: a request saves only the keys of `session.data` it changed (set or
    deleted), applied to the session as stored when the request ends. Concurrent requests
    that change different keys keep all their changes; when two change the same key, the
    one that ends last wins and a warning names the key.
    """

    service_name = "sessions"

    cache: Cache
    """The cache the sessions live in."""
    locks: Locks | None = None
    """Makes saving a session's data one critical section across processes (without: within one process)."""
    events: Events | None = None
    """Announces each deleted session (a logout) to every process, so a WebSocket bound to it loses its rights at
    once."""
    users: UserStore | None = None
    """A session made by a login is dropped once its user is gone or disabled, and takes the user's current scope
    and permissions."""
    recheck: NonNegative = 60.0
    """With `events`: seconds a loaded session is used again without reading it (and its user)
    again; a write or a delete of the session, or `AuthService.revoke_user`, ends that at once
    in every process. 0, or no `events`: every request reads it."""
    ttl: Positive = 86400.0
    """Seconds a session lives after it was last used."""
    key_prefix: str = "_session"
    """The cache key of a session is `<key_prefix>.<id>`."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._known: Known | None = None  # id -> (the session encoded, its data encoded): see `known`
        self._unlisten: Callable[[], None] | None = None

    async def start(self) -> None:
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder().decode
        self._decode_session = msgspec.msgpack.Decoder(StoredSession).decode
        if self.events is not None and self.recheck > 0:
            self._known = Known()
            self._unlisten = self.events.add_listener(self._known)

    async def stop(self, exception: Exception | None = None) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = self._known = None

    def _key(self, session_id: str) -> str:
        return f"{self.key_prefix}.{session_id}"

    async def new_session(self, **fields: Any) -> StoredSession:
        """Create a session with a fresh id (the keyword arguments of
        `SessionStore.new_session`), save it and return it."""
        session = StoredSession(id=secrets.token_urlsafe(24), **session_fields(**fields))
        await self._write(session)  # a new id: no process holds a copy to tell about
        return session

    async def _read(self, session_id: str) -> StoredSession | None:
        try:
            return await self.cache.get(self._key(session_id), type=StoredSession)
        except msgspec.ValidationError as exc:
            # written by an incompatible version: as good as gone
            self.logger.warning("unreadable session dropped", session_id=session_id, error=str(exc))
            await self.cache.delete(self._key(session_id))
            return None

    def known(self, session_id: str) -> StoredSession | None:
        """A fresh copy of the session as this process loaded it less than `recheck` seconds
        ago, when no notice has ended or changed it since; None: `load_session` reads it."""
        known = self._known
        if known is None:
            return None
        kept = known.get(session_id)
        if kept is None:
            return None
        session = self._decode_session(kept[0])
        _remember(session, kept[1])
        return session

    async def load_session(self, session_id: str) -> StoredSession | None:
        """The stored session, or None when the id is unknown, expired or malformed, or its
        user (with a `users` store) is gone or disabled."""
        if not _valid_id(session_id):
            return None
        since = self._known.generation if self._known is not None else 0
        session = await self._read(session_id)
        if session is None:
            return None
        if session.username is not None and self.users is not None:
            user = await self.users.get_user(session.username)
            if user is None or user.disabled:
                await self.cache.delete(self._key(session_id))
                return None
            session.scope, session.permissions = user.scope, user.permissions
        data = self._encode(session.data)
        _remember(session, data)  # what finish_session compares against
        if self._known is not None:
            tags = [("session", session_id), ("saved", session_id)]
            if session.username is not None:
                tags.append(("user", session.username))
            seconds = min(self.recheck, session.saved_at + self.ttl - time.time())
            self._known.keep(session_id, (self._encode(session), data), seconds, tags, since)
        return session

    async def save_session(self, session: Session) -> None:
        """Store `session` as it is (overwriting), restarting its TTL."""
        await self._write(session)
        await self._saved(session.id)

    async def _write(self, session: Session) -> StoredSession:
        if not _valid_id(session.id):
            raise ValueError(f"a session id must be 1-128 characters of A-Z a-z 0-9 _ - ., got {session.id!r}")
        if not isinstance(session, StoredSession):
            session = StoredSession(**msgspec.structs.asdict(session))
        session.version += 1
        session.saved_at = time.time()
        _remember(session, self._encode(session.data))
        await self.cache.set(self._key(session.id), session, ttl=self.ttl, keep=True)
        return session

    async def _saved(self, session_id: str) -> None:
        """Tell every process (this one first) that the stored session changed: copies are stale."""
        if self.events is not None:
            await self.events.revoke("saved", session_id)

    async def finish_session(self, session: Session) -> None:
        """Save the keys of `session.data` the request changed (see the class's concurrency
        rule), and restart the TTL when a quarter of it has passed since the last save. A
        session deleted meanwhile (a logout) stays deleted."""
        loaded = _remembered(session) if isinstance(session, StoredSession) else None
        if not isinstance(session, StoredSession) or loaded is None:
            return
        changed = self._encode(session.data) != loaded
        if not changed and time.time() - session.saved_at < self.ttl / 4:
            return
        async with self._locked(session.id):
            stored = await self._read(session.id)
            if stored is None:
                return
            if changed:
                stored.data = self._merge(session, stored, loaded)
            stored.version += 1
            stored.saved_at = time.time()
            await self.cache.set(self._key(session.id), stored, ttl=self.ttl, keep=True)
        await self._saved(session.id)
        session.data, session.version, session.saved_at = stored.data, stored.version, stored.saved_at
        _remember(session, self._encode(stored.data))

    def _merge(self, session: StoredSession, stored: StoredSession, loaded: bytes) -> dict[str, Any]:
        """`stored.data` with the keys this request set or deleted in `session.data`."""
        before = self._decode(loaded)
        data, enc = dict(stored.data), self._encode
        mine = {k for k, v in session.data.items() if k not in before or enc(v) != enc(before[k])}
        mine |= before.keys() - session.data.keys()
        if stored.version != session.version:
            clashes = sorted(k for k in mine if enc(stored.data.get(k)) != enc(before.get(k)))
            if clashes:
                self.logger.warning(
                    "concurrent requests changed the same session keys: the last wins",
                    session_id=session.id,
                    keys=clashes,
                )
        for key in mine:
            if key in session.data:
                data[key] = session.data[key]
            else:
                data.pop(key, None)
        return data

    @contextlib.asynccontextmanager
    async def _locked(self, session_id: str) -> AsyncIterator[None]:
        if self.locks is None:  # with MemoryCache nothing yields between the read and the write
            yield
            return
        async with self.locks.lock(f"{self.key_prefix}.{session_id}", ttl=10):
            yield

    async def delete_session(self, session_id: str) -> None:
        """Forget a session (a logout); unknown ids are ignored."""
        if _valid_id(session_id):
            await self.cache.delete(self._key(session_id))
            if self.events is not None:
                await self.events.revoke("session", session_id)
