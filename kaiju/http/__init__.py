"""HTTP transport: `HTTPServer` (JSON-RPC over aiohttp), `route` (HTTP handlers on services) and
the clients `HTTPClient`, `HTTPRPCClient` and `WSRPCClient` (JSON-RPC over a WebSocket).

Names are imported lazily; `import kaiju.http` loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.http.client import HTTPClient, HTTPResponse, HTTPRPCClient
    from kaiju.http.routes import Route, route
    from kaiju.http.server import HTTPServer
    from kaiju.http.ws_client import WSRPCClient

__getattr__ = _front_door(__name__, __file__, globals())
