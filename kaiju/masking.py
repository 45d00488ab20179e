"""Secrets masked: in a config shown to a person, in log lines, in a probe's answer.

A key whose name says it holds a secret (`is_secret_key`) has its value replaced by `MASK`
(`mask_secrets`, over nested mappings and lists); in free text (`mask_text`) URL passwords,
`name=value` pairs and query parameters with a secret's name, and PEM blocks are masked.
A leaf module: the config display, the logging filter and the health checks all use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret_key", "mask_secrets", "mask_text"]

MASK = "***"

# whole words of a key name that mark a secret, and endings of a word that do ("dbpassword")
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "key",
        "apikey",
        "credentials",
        "credential",
        "auth",
        "jwt",
        "passphrase",
        "cookie",
        "authorization",
        "hmac",
        "otp",
        "totp",
        "seed",
        "salt",
        "pepper",
        "pin",
        "pem",
    }
)
_SECRET_ENDINGS = ("password", "passwd", "secret", "token", "apikey", "passphrase", "credential", "cookie")
# plurals mark a secret as the last word only: "tokens" and "api_keys" do, "tokens_count" does not
_SECRET_PLURALS = frozenset(
    {
        "passwords",
        "passwds",
        "secrets",
        "tokens",
        "apikeys",
        "credentials",
        "passphrases",
        "cookies",
        "jwts",
        "authorizations",
    }
)
_KEY_OWNERS = frozenset({"api", "private", "secret", "signing", "access", "ssh", "encryption"})  # "<owner>_keys"
# query parameters whose value is a credential although the name alone is no secret word
_SECRET_QUERY_NAMES = frozenset(
    {"sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "code"}
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s/@]+)(?=@)")
# a user name alone in a URL is kept, unless it is as long as a token ("https://ghp_...@github.com")
_URL_TOKEN_USER = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<secret>[^\s:/@]{20,})(?=@)")
_TEXT_PAIR = re.compile(r"(?P<head>\b(?P<name>[A-Za-z_][\w.\-]*)\s*[=:]\s*)(?P<value>[^\s,;&]+)")
_QUERY_PARAM = re.compile(r"(?P<head>[?&](?P<name>[^=&#\s]+)=)(?P<value>[^&#\s]*)")
# values that are credentials whatever their key: an Authorization value (not "Basic usage": a
# credential is more than lowercase letters), a JWT, a password hash
_SECRET_VALUE = re.compile(
    r"(?i:bearer|basic|digest|token)\s+(?![a-z]+$)[A-Za-z0-9._~+/=-]{8,}"
    r"|eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|\$argon2(id|i|d)\$.*"
)
# a PEM block (a private key above all) under any name, whole or cut short, anywhere in a text
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.S)


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\-.\s]+", _CAMEL.sub("_", name).lower()) if w]


def is_secret_key(name: Any) -> bool:
    """True for a key name that looks like it holds a secret.

    The name is split into words on ``_``, ``-``, ``.``, spaces and camelCase; it is secret
    when a word is one of password, passwd, pwd, pass, secret, token, key, apikey,
    credential(s), auth, jwt, passphrase, cookie, authorization, hmac, otp, totp, seed, salt,
    pepper, pin, pem, or ends with password, passwd, secret,
    token, apikey, passphrase, credential or cookie; or when its last word is a plural of
    one (``tokens``, ``secrets``, ``api_keys``, ``passwords``). ``keys``, ``monkey`` or
    ``tokens_count`` are not.
    """
    if not isinstance(name, str):
        return False
    words = _words(name)
    if any(word in _SECRET_WORDS or word.endswith(_SECRET_ENDINGS) for word in words):
        return True
    if not words:
        return False
    last = words[-1]
    return (
        last in _SECRET_PLURALS
        or last.endswith(tuple(_SECRET_PLURALS))
        or (last == "keys" and len(words) > 1 and words[-2] in _KEY_OWNERS)
    )


def mask_secrets(data: Any) -> Any:
    """A copy of `data` with secrets replaced by ``"***"``.

    Masks the value of every key for which `is_secret_key` is true (null and true/false
    stay as they are: they are settings, not credentials), values that are credentials
    by their shape (``Bearer ...``, ``Basic ...``, a JWT, an argon2 hash), a secret header
    given as a ``[name, value]`` pair, PEM blocks (private keys) under any name, the user
    information of URLs
    (``redis://:pw@host`` -> ``redis://:***@host``) and secret query parameters
    (``?token=...``, ``&sig=...``).
    """
    if isinstance(data, Mapping):
        return {key: (MASK if _masked(key, value) else mask_secrets(value)) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        if len(data) == 2 and is_secret_key(data[0]) and isinstance(data[1], str):  # a header as [name, value]
            return [data[0], MASK]
        return [mask_secrets(value) for value in data]
    if isinstance(data, str):
        if _SECRET_VALUE.fullmatch(data.strip()):
            return MASK
        return _mask_url(_PEM.sub(MASK, data) if "-----BEGIN " in data else data)
    return data


def _masked(key: Any, value: Any) -> bool:
    return value is not None and not isinstance(value, bool) and is_secret_key(key)


def mask_text(text: str) -> str:
    """`text` (an error message, say) with the credentials it may hold masked: URL passwords
    and token-like user names, secret query parameters (`sig=`, ...) and `key=value` /
    `key: value` pairs whose key names a secret (`password=...`), and PEM blocks."""
    if "-----BEGIN " in text:
        text = _PEM.sub(MASK, text)
    text = _mask_url(text)
    return _TEXT_PAIR.sub(_mask_pair, text)


def _mask_pair(m: re.Match) -> str:
    if is_secret_key(m.group("name")):
        return m.group("head") + MASK
    # "failed: password=x": the value of an ordinary key may hold a secret pair itself
    return m.group("head") + _TEXT_PAIR.sub(_mask_pair, m.group("value"))


def _mask_url(text: str) -> str:
    if "://" not in text and "=" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _URL_TOKEN_USER.sub(lambda m: m.group("head") + MASK, text)
    return _QUERY_PARAM.sub(lambda m: m.group("head") + MASK if _secret_param(m.group("name")) else m.group(0), text)


def _secret_param(name: str) -> bool:
    return name.lower() in _SECRET_QUERY_NAMES or is_secret_key(name)
