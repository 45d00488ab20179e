"""Named locks with fencing tokens: `MemoryLocks` (one process) and `RedisLocks` (many hosts).

    from kaiju.locks import LockTimeout, Locks, MemoryLocks, RedisLocks

The interface and its errors live in `kaiju.locks.base`. Names are imported lazily:
importing this package (or naming `RedisLocks`) loads no Redis client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _lazy_getattr

_EXPORTS = {
    "Locks": "kaiju.locks.base",
    "LockInfo": "kaiju.locks.base",
    "LockError": "kaiju.locks.base",
    "LockExistsError": "kaiju.locks.base",
    "LockLostError": "kaiju.locks.base",
    "LockTimeout": "kaiju.locks.base",
    "NotLockOwnerError": "kaiju.locks.base",
    "MemoryLocks": "kaiju.locks.memory",
    "RedisLocks": "kaiju.locks.redis",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.locks.base import (
        LockError,
        LockExistsError,
        LockInfo,
        LockLostError,
        LockTimeout,
        Locks,
        NotLockOwnerError,
    )
    from kaiju.locks.memory import MemoryLocks
    from kaiju.locks.redis import RedisLocks


__getattr__ = _lazy_getattr("kaiju.locks", _EXPORTS, globals())
