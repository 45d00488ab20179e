"""Server push: `Events` (one process) and `RedisEvents` (every process of the app).

    await self.app.publish("orders.created", {"id": 7})

Names are imported lazily; `import kaiju.events` loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.events.base import EventListener, Events
    from kaiju.events.redis import RedisEvents

__getattr__ = _front_door(__name__, __file__, globals())
