"""Test helpers for kaiju apps: a real redis-server on a free port (`RedisServer`),
`free_port`, `started` (run services for the length of a block), `TestApp` (an app from
its config files, started in a test's loop), `eventually` (wait for a condition, failing
loudly at a deadline) and `OutputLines` (a child's output read with deadlines). The pytest
plugin is `kaiju.testing.plugin`. Names are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.testing.app import TestApp
    from kaiju.testing.lines import OutputLines
    from kaiju.testing.redis import RedisServer, free_port
    from kaiju.testing.services import started
    from kaiju.testing.waiting import eventually

__getattr__ = _front_door(__name__, __file__, globals())
