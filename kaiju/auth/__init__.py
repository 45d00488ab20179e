"""Users and authentication: `AuthService` (login, logout, tokens), `CacheSessions`
(sessions on the cache), `UserStore` and `ConfigUsers`, argon2id `Passwords`, JWT
`TokenSigner`, and the `LoginThrottle`.

Names are imported lazily; `import kaiju.auth` loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.auth.passwords import Passwords
    from kaiju.auth.service import AuthService, TokenSession
    from kaiju.auth.sessions import CacheSessions
    from kaiju.auth.throttle import LoginThrottle
    from kaiju.auth.tokens import TokenSigner
    from kaiju.auth.users import ConfigUsers, User, UserStore

__getattr__ = _front_door(__name__, __file__, globals())
