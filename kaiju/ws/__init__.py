"""JSON-RPC over WebSocket: the endpoint an `HTTPServer` serves at its `ws_path`.

`WSEndpoint` (endpoint.py) accepts upgrades and fans events out to the subscribed
connections; `Connection` (connection.py) serves one socket; `Credentials` (credentials.py)
is who a socket speaks for. The client is `kaiju.http.WSRPCClient`.

Names are imported lazily; `import kaiju.ws` loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaiju import _front_door

if TYPE_CHECKING:  # pragma: no cover -- the exports: `_front_door` imports each on first use
    from kaiju.ws.connection import Connection
    from kaiju.ws.credentials import Credentials, SessionBinder
    from kaiju.ws.endpoint import WSEndpoint, WSLimits

__getattr__ = _front_door(__name__, __file__, globals())
