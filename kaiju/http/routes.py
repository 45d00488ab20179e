"""HTTP routes declared on services: `@kaiju.http.route("GET", "/items/{id}")`.

A route is an `async def (self, request)` of a service returning an aiohttp response (or a
value kaiju encodes as JSON). The decorator only marks the function; `HTTPServer` finds the
marked methods of the services it serves (`routes_of`), adds the routes its config names
(`RouteEntry`, `config_routes`) and matches requests against them all (`RouteTable`, on
aiohttp's public `UrlDispatcher`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import msgspec
from aiohttp import web

from kaiju.runtime.service import SettingError

__all__ = [
    "Match",
    "Route",
    "RouteEntry",
    "RouteRequest",
    "RouteSpec",
    "RouteTable",
    "config_routes",
    "import_handler",
    "route",
    "route_spec",
    "routes_of",
]

_MARK = "__kaiju_route__"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"})


class RouteSpec(NamedTuple):
    """What `@route` records on a function: the HTTP method, the path pattern (aiohttp's
    syntax: `/items/{id}`, `/files/{name:.*}`) and whether it is for operators (`ops`)."""

    method: str
    path: str
    ops: bool = False


class Route(NamedTuple):
    """A route found on a service: its spec, the bound handler, the service's name (None for
    a route given in config, which belongs to no service), and whether it is for operators
    (served on HTTPServer's ops listener when it has one)."""

    method: str
    path: str
    handler: Callable[..., Any]
    service: str | None
    ops: bool = False

    @property
    def owner(self) -> str:
        """Who declared the route, for messages: 'service "shop"' or 'the config'."""
        return f'service "{self.service}"' if self.service is not None else "the config"


def route(method: str, path: str, *, ops: bool = False) -> Callable[[Callable], Callable]:
    """Mark an `async def (self, request)` of a service as the handler of `method path`;
    with `ops`, a route for operators (metrics, diagnostics), which an HTTPServer with an
    `ops_port` serves on that listener only.

    Raises TypeError for a function that is not `async def`, ValueError for an unknown
    HTTP method or a path that does not start with "/".
    """
    verb = method.upper()
    if verb not in _METHODS:
        raise ValueError(f"unknown HTTP method {method!r}, expected one of {', '.join(sorted(_METHODS))}")
    if not path.startswith("/"):
        raise ValueError(f"a route path starts with '/', got {path!r}")
    spec = RouteSpec(verb, path, ops)

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
    mro = type(service).__mro__
    for attr in dir(type(service)):
        # the attribute as its class defines it (what inspect.getattr_static gives, without its cost)
        func = next((klass.__dict__[attr] for klass in mro if attr in klass.__dict__), None)
        for spec in route_spec(func):
            found.append(Route(spec.method, spec.path, getattr(service, attr), name, spec.ops))
    return found


class RouteEntry(msgspec.Struct, forbid_unknown_fields=True):
    """A route given in config (HTTPServer's `routes` setting): `handler` is "package.module:function",
    an `async def (request)`."""

    path: str
    handler: str
    method: str = "GET"


def import_handler(ref: str) -> Callable[..., Any]:
    """The `async def` that "package.module:function" names.

    Raises ValueError saying what is wrong: not "module:function", a module that does not
    import, no such function, or a function that is not `async def`.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f'expected "package.module:function", got {ref!r}')
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the config's problem, said in one line
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    func: Any = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise ValueError(f"module {module_name!r} has no {attr!r}")
    if not inspect.iscoroutinefunction(func):
        raise ValueError(f"{ref} is not an async def")
    return func


def config_routes(entries: Sequence[RouteEntry | Mapping[str, str]]) -> list[Route]:
    """The routes of HTTPServer's `routes` setting (RouteEntry, or mappings of the same keys
    when given from Python), their handlers imported.

    Raises SettingError (key `routes`) naming the entry: `entry 1 (GET /x): handler: ...`.
    """
    found = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, RouteEntry):
                entry = msgspec.convert(entry, RouteEntry)
        except msgspec.ValidationError as exc:
            raise SettingError("routes", f"entry {index}: {exc}") from None
        where = f"entry {index} ({entry.method} {entry.path})"
        try:
            spec = route(entry.method, entry.path)
        except ValueError as exc:
            raise SettingError("routes", f"{where}: {exc}") from None
        try:
            handler = import_handler(entry.handler)
        except ValueError as exc:
            raise SettingError("routes", f"{where}: handler: {exc}") from None
        spec(handler)  # checks it once more, as @route would
        found.append(Route(entry.method.upper(), entry.path, handler, None))
    return found


class RouteRequest(web.BaseRequest):
    """aiohttp's request, with the `match_info` of the route it matched (the path parameters,
    `request.match_info["id"]`), as handlers of an aiohttp application read it."""

    ATTRS = web.BaseRequest.ATTRS | frozenset(["match_info"])
    match_info: Mapping[str, str] = MappingProxyType({})


class Match(NamedTuple):
    """What `RouteTable.resolve` found: the route (None when nothing matched), the path
    parameters, and the HTTP status to answer when nothing matched (404, or 405 with `allow`)."""

    route: Route | None
    params: Mapping[str, str]
    status: int = 200
    allow: str = ""


class RouteTable:
    """The routes an HTTPServer serves, matched with aiohttp's public `UrlDispatcher`.

    Raises SettingError when two routes share a method and a path, naming who declared them
    (the key is `routes` when the config declared one of them, else `route_services`).
    """

    def __init__(self, routes: Sequence[Route]):
        self.routes = list(routes)
        self._dispatcher = web.UrlDispatcher()
        self._by_route: dict[Any, Route] = {}
        seen: dict[tuple[str, str], Route] = {}
        for r in self.routes:
            other = seen.get((r.method, r.path))
            if other is not None:
                key = "routes" if None in (r.service, other.service) else "route_services"
                raise SettingError(key, f"{r.method} {r.path} is declared twice: by {other.owner} and by {r.owner}")
            seen[(r.method, r.path)] = r
            self._by_route[self._dispatcher.add_route(r.method, r.path, r.handler)] = r
        for r in self.routes:  # a GET route answers HEAD too (aiohttp sends no body), unless one is declared
            if r.method == "GET" and ("HEAD", r.path) not in seen:
                self._by_route[self._dispatcher.add_route("HEAD", r.path, r.handler)] = r
        self._dispatcher.freeze()

    def __len__(self) -> int:
        return len(self.routes)

    async def resolve(self, request: web.BaseRequest) -> Match:
        """The route for `request`'s method and path."""
        # UrlDispatcher.resolve is typed for a full web.Request; it reads rel_url and method only
        info = await self._dispatcher.resolve(cast(web.Request, request))
        error = info.http_exception
        if error is None:
            return Match(self._by_route[info.route], info)
        return Match(None, {}, error.status, error.headers.get("Allow", ""))
