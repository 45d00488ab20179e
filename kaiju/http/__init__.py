"""HTTP transport: `HTTPServer` (JSON-RPC over aiohttp) and the clients `HTTPClient`, `HTTPRPCClient`.

Names are imported lazily; `import kaiju.http` loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "HTTPServer": "kaiju.http.server",
    "HTTPClient": "kaiju.http.client",
    "HTTPRPCClient": "kaiju.http.client",
    "HTTPResponse": "kaiju.http.client",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.http.client import HTTPClient, HTTPResponse, HTTPRPCClient
    from kaiju.http.server import HTTPServer


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'kaiju.http' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
