"""HTTP routes declared on services: `@kaiju.http.route("GET", "/items/{id}")`.

A route is an `async def (self, request)` of a service returning an aiohttp response (or a
value kaiju encodes as JSON). The decorator only marks the function; `HTTPServer` finds the
marked methods of the services it serves (`routes_of`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["Route", "RouteSpec", "route", "route_spec", "routes_of"]

_MARK = "__kaiju_route__"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"})


class RouteSpec(NamedTuple):
    """What `@route` records on a function: the HTTP method and the path pattern
    (aiohttp's syntax: `/items/{id}`, `/files/{name:.*}`)."""

    method: str
    path: str


class Route(NamedTuple):
    """A route found on a service: its spec, the bound handler, and the service's name."""

    method: str
    path: str
    handler: Callable[..., Any]
    service: str


def route(method: str, path: str) -> Callable[[Callable], Callable]:
    """Mark an `async def (self, request)` of a service as the handler of `method path`.

    Raises TypeError for a function that is not `async def`, ValueError for an unknown
    HTTP method or a path that does not start with "/".
    """
    verb = method.upper()
    if verb not in _METHODS:
        raise ValueError(f"unknown HTTP method {method!r}, expected one of {', '.join(sorted(_METHODS))}")
    if not path.startswith("/"):
        raise ValueError(f"a route path starts with '/', got {path!r}")
    spec = RouteSpec(verb, path)

    def mark(func: Callable) -> Callable:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"@route needs an async def, got {getattr(func, '__qualname__', func)!r}")
        marks = getattr(func, _MARK, ())
        setattr(func, _MARK, (*marks, spec))  # one handler may serve several routes
        return func

    return mark


def route_spec(obj: Any) -> tuple[RouteSpec, ...]:
    """The RouteSpecs of a function marked with `@route` (empty when unmarked)."""
    marks = getattr(obj, _MARK, ()) if callable(obj) else ()
    return tuple(m for m in marks if isinstance(m, RouteSpec))


def routes_of(service: Any, name: str) -> list[Route]:
    """The routes declared on `service` (registered under the service name `name`)."""
    found = []
    for attr in dir(type(service)):
        func = inspect.getattr_static(type(service), attr, None)
        for spec in route_spec(func):
            found.append(Route(spec.method, spec.path, getattr(service, attr), name))
    return found
