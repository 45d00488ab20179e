"""Users and authentication: `AuthService` (login, logout, tokens), `CacheSessions`
(sessions on the cache), `UserStore` and `ConfigUsers`, argon2id `Passwords`, JWT
`TokenSigner`, and the `LoginThrottle`.

Names are imported lazily; `import kaiju.auth` loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _lazy_getattr

_EXPORTS = {
    "AuthService": "kaiju.auth.service",
    "TokenSession": "kaiju.auth.service",
    "CacheSessions": "kaiju.auth.sessions",
    "User": "kaiju.auth.users",
    "UserStore": "kaiju.auth.users",
    "ConfigUsers": "kaiju.auth.users",
    "Passwords": "kaiju.auth.passwords",
    "TokenSigner": "kaiju.auth.tokens",
    "LoginThrottle": "kaiju.auth.throttle",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.auth.passwords import Passwords
    from kaiju.auth.service import AuthService, TokenSession
    from kaiju.auth.sessions import CacheSessions
    from kaiju.auth.throttle import LoginThrottle
    from kaiju.auth.tokens import TokenSigner
    from kaiju.auth.users import ConfigUsers, User, UserStore


__getattr__ = _lazy_getattr("kaiju.auth", _EXPORTS, globals())
