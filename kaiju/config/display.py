"""Showing a config to a person: secrets masked, YAML out (the ``config`` command)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["MASK", "dump_yaml", "is_secret_key", "mask_secrets"]

MASK = "***"

# whole words of a key name that mark a secret, and endings of a word that do ("dbpassword")
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "key", "apikey", "credentials"})
_SECRET_ENDINGS = ("password", "passwd", "secret", "token", "apikey")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s/@]+)(?=@)")
_QUERY_PARAM = re.compile(r"(?P<head>[?&](?P<name>[^=&#\s]+)=)(?P<value>[^&#\s]*)")


def is_secret_key(name: Any) -> bool:
    """True for a key name that looks like it holds a secret.

    The name is split into words on ``_``, ``-``, ``.``, spaces and camelCase; it is secret
    when a word is one of password, passwd, pwd, secret, token, key, apikey, credentials,
    or ends with password, passwd, secret, token or apikey. ``keys`` or ``monkey`` are not.
    """
    if not isinstance(name, str):
        return False
    words = re.split(r"[_\-.\s]+", _CAMEL.sub("_", name).lower())
    return any(word in _SECRET_WORDS or word.endswith(_SECRET_ENDINGS) for word in words)


def mask_secrets(data: Any) -> Any:
    """A copy of `data` with secrets replaced by ``"***"``.

    Masks the value of every key for which `is_secret_key` is true (null stays null),
    the password in URLs (``redis://:pw@host`` -> ``redis://:***@host``) and secret-named
    URL query parameters (``?token=...``).
    """
    if isinstance(data, Mapping):
        return {
            key: (MASK if is_secret_key(key) and value is not None else mask_secrets(value))
            for key, value in data.items()
        }
    if isinstance(data, (list, tuple)):
        return [mask_secrets(value) for value in data]
    if isinstance(data, str):
        return _mask_url(data)
    return data


def _mask_url(text: str) -> str:
    if "://" not in text and "=" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _QUERY_PARAM.sub(
        lambda m: m.group("head") + MASK if is_secret_key(m.group("name")) else m.group(0), text
    )


def dump_yaml(data: Any) -> str:
    """`data` as block-style YAML, keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
