"""Named locks with fencing tokens: `MemoryLocks` (one process) and `RedisLocks` (many hosts).

The interface and errors live in `kaiju.locks.base`; backends are imported only when named.
"""

from kaiju.locks.base import (
    LockError,
    LockExistsError,
    LockInfo,
    LockLostError,
    Locks,
    LockTimeout,
    NotLockOwnerError,
)

__all__ = ["LockError", "LockExistsError", "LockInfo", "LockLostError", "LockTimeout", "Locks", "NotLockOwnerError"]
