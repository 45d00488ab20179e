"""Who may log in: the `UserStore` interface and `ConfigUsers`, users listed in config.

A store answers one question, `get_user(username)`, with a `User` (id, argon2id password
hash, scope, permissions, disabled) or None. `AuthService` asks it at every login and at
every request authenticated by a token or a session, so a user disabled in the store is
refused at once by every process that reads the same store.
"""

from __future__ import annotations

import abc
from typing import Any

import msgspec

from kaiju.auth.passwords import is_password_hash
from kaiju.rpc.access import Scope, parse_scope
from kaiju.runtime.service import Service, SettingError

__all__ = ["ConfigUser", "ConfigUsers", "User", "UserStore"]


class User(msgspec.Struct, kw_only=True, frozen=True):
    """A user as a `UserStore` gives it. `scope` and `permissions` become the caller's."""

    id: Any
    username: str
    password_hash: str | None = None
    scope: Scope = Scope.USER
    permissions: frozenset[str] = frozenset()
    disabled: bool = False


class UserStore(Service, abc.ABC):
    """The users `AuthService` checks (found by type): subclass it and implement `get_user`.

    A store over the application's database reads the user row in `get_user`; it may
    implement `set_password_hash` to keep the rehashed passwords `AuthService` hands it.
    """

    service_name = "users"

    @abc.abstractmethod
    async def get_user(self, username: str) -> User | None:
        """The user called `username`, or None when there is none."""

    async def set_password_hash(self, user: User, password_hash: str) -> None:
        """Store a new hash of the user's password (made with newer parameters). Default: keep none."""


class ConfigUser(msgspec.Struct, forbid_unknown_fields=True):
    """One entry of `ConfigUsers.users`: an argon2id hash, never the password itself."""

    password_hash: str
    id: str | int | None = None
    scope: str = "user"
    permissions: list[str] = []
    disabled: bool = False


class ConfigUsers(UserStore):
    """Users listed in config (service name "users").

    Settings: `users`: `{username: {password_hash, id, scope, permissions, disabled}}`.
    The id defaults to the username; `password_hash` must be an argon2 hash (make one
    with `kaiju-run hash-password`): a plain password there is a config error.
    """

    users: dict[str, ConfigUser] = {}  # noqa: RUF012 -- a setting's default, never mutated
    """The users by name: `{password_hash, scope, permissions, disabled, id}` each (hashes only: `kaiju-run
    hash-password`)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._users = {name: _user(name, entry) for name, entry in dict(self.users).items()}

    async def get_user(self, username: str) -> User | None:
        """The user with this name, or None."""
        return self._users.get(username)


def _user(name: str, entry: ConfigUser | dict) -> User:
    if isinstance(entry, dict):
        entry = msgspec.convert(entry, ConfigUser)
    if not is_password_hash(entry.password_hash):
        # the value is never quoted: it may be the password itself
        raise SettingError(
            f"users.{name}.password_hash",
            "expected an argon2id hash made by `kaiju-run hash-password`, got something else",
        )
    try:
        scope = parse_scope(entry.scope)
    except ValueError as exc:
        raise SettingError(f"users.{name}.scope", str(exc)) from None
    return User(
        id=name if entry.id is None else entry.id,
        username=name,
        password_hash=entry.password_hash,
        scope=scope,
        permissions=frozenset(entry.permissions),
        disabled=entry.disabled,
    )
