"""Named locks with fencing tokens: `MemoryLocks` (one process) and `RedisLocks` (many hosts).

    from kaiju.locks import LockTimeout, Locks, MemoryLocks, RedisLocks

The interface and its errors live in `kaiju.locks.base`. Names are imported lazily:
importing this package (or naming `RedisLocks`) loads no Redis client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.locks.base import (
        LockError,
        LockExistsError,
        LockInfo,
        LockLostError,
        Locks,
        LockTimeout,
        NotLockOwnerError,
    )
    from kaiju.locks.memory import MemoryLocks
    from kaiju.locks.redis import RedisLocks

__getattr__ = _front_door(__name__, __file__, globals())
