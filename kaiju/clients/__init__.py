"""Typed clients generated from an app's OpenRPC document (`kaiju-run client`).

    kaiju-run -c app.yml openrpc                          # the document, as JSON
    kaiju-run -c app.yml client --lang python -o api.py   # msgspec Structs and an async client
    kaiju-run -c app.yml client --lang typescript -o api.ts

Names are imported lazily; `import kaiju.clients` loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.clients.python import python_client
    from kaiju.clients.typescript import typescript_client

__getattr__ = _front_door(__name__, __file__, globals())
