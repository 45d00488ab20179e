"""HTTP transport: `HTTPServer` (JSON-RPC over aiohttp), `route` (HTTP handlers on services) and
the clients `HTTPClient`, `HTTPRPCClient`.

Names are imported lazily; `import kaiju.http` loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _lazy_getattr

_EXPORTS = {
    "HTTPServer": "kaiju.http.server",
    "HTTPClient": "kaiju.http.client",
    "HTTPRPCClient": "kaiju.http.client",
    "HTTPResponse": "kaiju.http.client",
    "route": "kaiju.http.routes",
    "Route": "kaiju.http.routes",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.http.client import HTTPClient, HTTPResponse, HTTPRPCClient
    from kaiju.http.routes import Route, route
    from kaiju.http.server import HTTPServer


__getattr__ = _lazy_getattr("kaiju.http", _EXPORTS, globals())
