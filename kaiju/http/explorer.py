"""The API explorer page an `HTTPServer` serves at its `docs_path`.

One self-contained HTML file (`explorer.html`: its style and script inline, no external URL,
so it works offline and behind any firewall). The page reads `rpc.discover` for the methods
the visitor may call, logs the visitor in (`auth.login`, over the WebSocket when it is open,
which binds the socket too, else over HTTP), calls a method from a form or raw JSON over HTTP
or the WebSocket, and subscribes to event topics. Its script runs under a Content Security
Policy that allows it alone (a fresh nonce per response) and connections to its own origin.
"""

from __future__ import annotations

import html
import json
import secrets
from functools import cache
from importlib import resources

__all__ = ["explorer_page"]


@cache
def _template() -> str:
    return resources.files("kaiju.http").joinpath("explorer.html").read_text(encoding="utf-8")


def explorer_page(rpc_path: str, ws_path: str | None, title: str) -> tuple[bytes, dict[str, str]]:
    """The page's body and headers (HTML, a CSP with a fresh nonce, never cached)."""
    nonce = secrets.token_urlsafe(16)
    config = json.dumps({"rpc": rpc_path, "ws": ws_path, "title": title}).replace("<", "\\u003c")
    page = (
        _template().replace("{{NONCE}}", nonce).replace("{{TITLE}}", html.escape(title)).replace("{{CONFIG}}", config)
    )
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    return page.encode(), headers
