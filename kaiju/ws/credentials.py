"""Who a WebSocket connection speaks for, and how long that is trusted without asking.

A connection authenticates once, by its upgrade request (`Session-Id`, the session cookie,
`Authorization`) or by calling `auth.login` over the socket, which binds the new session to
it. Its calls then run under that session without a store round trip per message; the
session is loaded again (`SessionBinder.load`) only when

- a revocation notice names it (`WSEndpoint.revoked`, heard through the app's `Events`: a
  logout, a revoked token family, a disabled user, in any process): its rights end at once,
  before the next message;
- notices may have been missed (the events channel broke): it is marked stale;
- `recheck` seconds passed since it was last loaded, for what no notice announces (a
  session that expired, a user disabled in a database, an access token past its expiry).
  Without an `Events` service nothing is announced, so `recheck` is 0: every message
  loads it, as an HTTP request would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from kaiju.rpc.access import Scope, Session
from kaiju.rpc.errors import NotAuthorized

__all__ = ["Credentials", "SessionBinder"]


class Credentials:
    """One connection's caller: its session (None: it runs with the server's default scope),
    what the session was found by (a session id, or an Authorization value), the loop time
    at which it must be checked again, and whether a notice made it doubtful (`stale`)."""

    __slots__ = ("session", "session_id", "authorization", "check_at", "stale")

    def __init__(self, session_id: str | None = None, authorization: str | None = None):
        self.session: Session | None = None
        self.session_id = session_id
        self.authorization = authorization
        self.check_at = -math.inf
        self.stale = False

    def trusted(self, now: float) -> bool:
        """Whether the session may be used without loading it again."""
        return self.session is None or (not self.stale and now < self.check_at)

    def drop(self) -> None:
        """Forget the session and what found it: the connection is a guest from now on."""
        self.session = self.session_id = self.authorization = None
        self.stale = False

    def matches(self, kind: str, value: str) -> bool:
        """Whether a revocation notice (`kind`, `value`) names this connection's session."""
        session = self.session
        if session is None:
            return False
        if kind == "session":
            return self.session_id == value
        if kind == "family":
            return getattr(session, "family", None) == value
        # kind "user": sessions made by a login carry the user name; tokens' sessions too
        return getattr(session, "username", None) == value or str(session.user_id) == value

    def push_scope(self, default: Scope) -> Scope:
        """The scope events are filtered by: the session's, unless it is in doubt."""
        session = self.session
        return session.scope if session is not None and not self.stale else default


class SessionBinder:
    """Loads the sessions of one server's connections from the RPCServer's `sessions` and
    `auth` services (either may be None), and keeps them for `recheck` seconds."""

    def __init__(self, sessions: Any, auth: Any, recheck: float, clock: Callable[[], float]):
        self.sessions = sessions
        self.auth = auth
        self.recheck = recheck
        self.clock = clock

    async def load(self, creds: Credentials) -> None:
        """Find `creds.session` by its session id, else its Authorization; drop the credentials
        when the session is gone or the Authorization refused. Raises what the store raises
        (the credentials are left as they were)."""
        session = None
        if creds.session_id and self.sessions is not None:
            session = await self.sessions.load_session(creds.session_id)
        elif creds.authorization and self.auth is not None:
            try:
                session = await self.auth.authenticate(creds.authorization)
            except NotAuthorized:
                session = None
        if session is None:
            creds.drop()
            return
        creds.session, creds.stale = session, False
        creds.check_at = self.clock() + self.recheck

    async def first(self, creds: Credentials) -> None:
        """`load` for the upgrade request: an unknown session id leaves a guest (as over HTTP),
        a refused Authorization raises NotAuthorized (the upgrade is refused)."""
        if creds.session_id and self.sessions is not None:
            await self.load(creds)
            if creds.session is not None:
                return
        if creds.authorization and self.auth is not None:
            session = await self.auth.authenticate(creds.authorization)  # NotAuthorized goes up
            if session is not None:
                creds.session, creds.session_id = session, None
                creds.check_at = self.clock() + self.recheck
                return
        creds.drop()

    async def bind(self, creds: Credentials, session_id: str) -> None:
        """A call over the socket named a new session (`auth.login`): bind it; "" unbinds (a logout)."""
        creds.drop()
        if session_id:
            creds.session_id = session_id
            await self.load(creds)

    async def finish(self, session: Session) -> None:
        """Let the store keep what a call changed in a stored session (no round trip when nothing did)."""
        if self.sessions is not None:
            await self.sessions.finish_session(session)
