"""Signed tokens (JWT, through PyJWT): issuing and checking access and refresh tokens.

An access token carries `sub`, `scope`, `permissions`, `iat`, `exp`, `jti`, `typ`
("access") and `fam`, the id of the login it descends from; a refresh token carries
`sub`, `iat`, `exp`, `jti`, `typ` ("refresh") and `fam`. Only the one configured
algorithm is accepted when checking, so a token saying `alg: none` or naming another
algorithm is refused like a tampered one.
"""

from __future__ import annotations

import secrets
import time
from types import ModuleType
from typing import Any

from kaiju.runtime.service import SettingError

__all__ = ["ALGORITHMS", "TokenError", "TokenSigner", "load_jwt", "weak_secret"]

ALGORITHMS = ("HS256", "EdDSA", "RS256")
_MIN_SECRET = 32  # characters: PyJWT warns below this for HS256, and so do we (as an error)
_MIN_DISTINCT = 8  # different characters: "aaaa...a" or "abababab..." is not a key
# secrets published in kaiju's examples and docs of earlier versions: anybody can sign with them
PUBLISHED_SECRETS = frozenset({"change-this-example-secret-to-32-chars-or-more"})


def weak_secret(secret: str | None) -> str | None:
    """Why `secret` must not sign tokens outside env dev (None when it may): published in an
    example, or made of too few different characters."""
    if not secret:
        return "none"
    if secret in PUBLISHED_SECRETS:
        return "the published example secret"
    if len(set(secret)) < _MIN_DISTINCT:
        return f"a secret of fewer than {_MIN_DISTINCT} different characters"
    return None


def load_jwt() -> ModuleType:
    """PyJWT, imported on first use: it loads cryptography, which a config check never needs."""
    import jwt

    return jwt


class TokenError(Exception):
    """A token that is expired, tampered with, wrongly signed or of the wrong kind."""


VERIFIED_KEPT = 4096  # tokens whose signature a TokenSigner remembers as checked


class TokenSigner:
    """Signs and checks tokens with one algorithm: HS256 with `secret`, or EdDSA / RS256 with
    a PEM key pair (`private_key` signs, `public_key` checks). Raises SettingError (a
    ValueError naming the setting) for a
    missing or too short key."""

    def __init__(
        self,
        algorithm: str = "HS256",
        secret: str | None = None,
        private_key: str | None = None,
        public_key: str | None = None,
    ):
        if algorithm not in ALGORITHMS:
            raise SettingError("algorithm", f"expected one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
        self.algorithm = algorithm
        self._verified: dict[str, dict[str, Any]] = {}
        if algorithm == "HS256":
            if not secret or len(secret) < _MIN_SECRET:
                raise SettingError("secret", f"expected at least {_MIN_SECRET} characters for HS256, got fewer")
            self._sign_key: Any = secret
            self._check_key: Any = secret
        else:
            if not private_key or not public_key:
                raise SettingError("private_key", f"expected a PEM key pair (private_key, public_key) for {algorithm}")
            from cryptography.hazmat.primitives import serialization

            try:
                self._sign_key = serialization.load_pem_private_key(private_key.encode(), password=None)
                self._check_key = serialization.load_pem_public_key(public_key.encode())
            except (ValueError, TypeError) as exc:
                raise SettingError(
                    "private_key", f"expected a PEM key pair (private_key, public_key), got none ({exc})"
                ) from None

    def issue(self, kind: str, subject: str, family: str, ttl: float, **claims: Any) -> tuple[str, dict[str, Any]]:
        """A signed token of `kind` ("access" or "refresh") for `subject`; returns (token, its claims)."""
        now = int(time.time())
        payload = {
            "sub": subject,
            "iat": now,
            "exp": now + int(ttl),
            "jti": secrets.token_urlsafe(16),
            "typ": kind,
            "fam": family,
            **claims,
        }
        return load_jwt().encode(payload, self._sign_key, algorithm=self.algorithm), payload

    def check(self, token: str, kind: str) -> dict[str, Any]:
        """The claims of a valid token of `kind`; raises TokenError otherwise.

        A token whose signature was checked once is remembered (up to `VERIFIED_KEPT` of them,
        the oldest forgotten first), so a client sending the same access token with every
        request pays for the signature once: its expiry is checked every time. Revocation is
        the caller's to check (the cache), every time.
        """
        claims = self._verified.get(token)
        if claims is None:
            jwt = load_jwt()
            try:
                claims = jwt.decode(
                    token,
                    self._check_key,
                    algorithms=[self.algorithm],
                    options={"require": ["sub", "iat", "exp", "jti", "typ", "fam"]},
                )
            except jwt.ExpiredSignatureError:
                raise TokenError("the token has expired") from None
            except jwt.PyJWTError:
                raise TokenError("the token is not valid") from None
            if len(self._verified) >= VERIFIED_KEPT:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        elif claims["exp"] <= time.time():
            del self._verified[token]
            raise TokenError("the token has expired")
        if claims["typ"] != kind:
            raise TokenError(f"not an {kind} token" if kind[0] in "aeiou" else f"not a {kind} token")
        return claims
