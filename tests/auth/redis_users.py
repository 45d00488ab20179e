"""A UserStore over Redis, for the tests that run several processes: the shape of a store
over an application's own database (one read per `get_user`)."""

from __future__ import annotations

import msgspec

from kaiju.auth.users import User, UserStore
from kaiju.redis import RedisConnection
from kaiju.rpc.access import parse_scope


class StoredUser(msgspec.Struct):
    password_hash: str
    scope: str = "user"
    permissions: list[str] = []
    disabled: bool = False


class RedisUsers(UserStore):
    """Users kept as JSON under `<prefix>.<username>` in Redis."""

    redis: RedisConnection
    prefix: str = "test_users"

    async def start(self) -> None:
        self._decode = msgspec.json.Decoder(StoredUser).decode

    async def get_user(self, username: str) -> User | None:
        raw = await self.redis.client.get(f"{self.prefix}.{username}")
        if raw is None:
            return None
        row = self._decode(raw)
        return User(
            id=username, username=username, password_hash=row.password_hash, scope=parse_scope(row.scope),
            permissions=frozenset(row.permissions), disabled=row.disabled,
        )
