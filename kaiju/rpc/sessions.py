"""Where the dispatcher finds a caller's session: the Session-Id and Authorization headers.

A request names its session in the `Session-Id` header, or brings credentials in the
`Authorization` header. `RPCServer` asks its `sessions` service (a `SessionStore`) for the
first, and its `auth` service (an `Authenticator`) for the second when no session was
found; the session's scope and permissions then decide what the request may call.

- `SessionStore`: the interface of a session store: `load_session(session_id)`, and
  `finish_session(session)`, which the dispatcher awaits after the method ran.
- `Authenticator`: the interface of an authentication service: `authenticate(authorization)`.

Both may answer `known(...)` first: a session they can vouch for without I/O (the built-in
ones remember what they verified while an `Events` service announces what ends it), which
spares the request the lookup's await.

The built-in store, `CacheSessions` (sessions on the app's cache), is in `kaiju.auth.sessions`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any

from kaiju.rpc.access import Scope, Session, parse_scope
from kaiju.runtime.service import Service

__all__ = ["Authenticator", "SessionStore", "session_fields"]


class SessionStore(Service, abc.ABC):
    """A session store for `RPCServer`: subclass it and implement `load_session`.

    `RPCServer` finds one by type (or by name: `settings: {sessions: NAME}`) and calls
    `load_session` for each request that carries a `Session-Id` header, and
    `finish_session` once that request's method has run. `AuthService` creates and
    deletes sessions through `new_session` and `delete_session`.
    """

    @abc.abstractmethod
    async def load_session(self, session_id: str) -> Session | None:
        """The session with this id, or None when there is none (unknown or expired)."""

    def known(self, session_id: str) -> Session | None:
        """The session with this id when the store can vouch for it without any I/O (a copy
        of one it loaded recently and no notice has ended since), for the request's own use;
        None: the server awaits `load_session`. Default: None."""
        return None

    async def finish_session(self, session: Session) -> None:
        """Called after a request that ran under `session` (loaded by `load_session` or given
        by `known`): keep what the method changed. Default: nothing."""

    async def new_session(
        self,
        *,
        user_id: Any = None,
        scope: Scope | int | str = Scope.USER,
        permissions: Iterable[str] = (),
        data: Mapping[str, Any] | None = None,
        username: str | None = None,
    ) -> Session:
        """Create and store a session with a fresh id (a login). Default: NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} cannot create sessions")

    async def delete_session(self, session_id: str) -> None:
        """Forget a session (a logout). Default: NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete sessions")


def session_fields(
    *,
    user_id: Any = None,
    scope: Scope | int | str = Scope.USER,
    permissions: Iterable[str] = (),
    data: Mapping[str, Any] | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    """The fields of a new session from `SessionStore.new_session`'s keyword arguments: the
    scope parsed (ValueError for an unknown one), the permissions a frozenset, the data a dict."""
    return {
        "user_id": user_id,
        "scope": parse_scope(scope),
        "permissions": frozenset(permissions),
        "data": dict(data or {}),
        "username": username,
    }


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

    def known(self, authorization: str) -> Session | None:
        """The session for `authorization` when the service can vouch for it without any I/O
        (credentials it verified recently and no notice has revoked since), for the request's
        own use; None: the server awaits `authenticate`. Default: None."""
        return None
