"""HTTP clients: `HTTPClient` (an aiohttp session as a service) and `HTTPRPCClient` (JSON-RPC over it).

Inside a request, the RPC client passes the current correlation id and deadline on, so a
call to another service is traced and bounded like the request that makes it; when the
app traces, each call is a client span whose context goes along in a `traceparent`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import msgspec

from kaiju.rpc.context import current
from kaiju.rpc.errors import InternalError, RPCError, error_from_dict
from kaiju.rpc.protocol import ABORT_ON_ERROR, CORRELATION_ID, DEADLINE, USE_TEMPLATE
from kaiju.runtime.service import Service
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

if TYPE_CHECKING:  # pragma: no cover
    from kaiju.telemetry.tracing import Tracing

__all__ = ["BatchCalls", "HTTPClient", "HTTPRPCClient", "HTTPResponse"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class HTTPResponse(NamedTuple):
    """A whole HTTP response, read."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON; raises msgspec.DecodeError when it is not."""
        return _decode(self.body)


class HTTPClient(Service):
    """An aiohttp client session with a lifetime (service name "http_client").

    The settings are documented where each is declared, below.
    """

    service_name = "http_client"

    base_url: str = ""
    """Prefixed to relative paths."""
    timeout: float = 30.0
    """Seconds one request may take in all, unless a call says otherwise."""
    headers: dict = {}  # noqa: RUF012 -- a setting's default, never mutated
    """Sent with every request."""
    connections: int = 100
    """Open connections at most."""
    unix_socket: str | None = None
    """Connect through this Unix socket."""
    verify_ssl: bool = True
    """Check TLS certificates."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.session: aiohttp.ClientSession | None = None  # open between start() and stop()

    async def start(self) -> None:
        if self.unix_socket:
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=self.unix_socket, limit=self.connections)
        else:
            connector = aiohttp.TCPConnector(limit=self.connections, ssl=bool(self.verify_ssl))
        self.session = aiohttp.ClientSession(
            connector=connector, headers=dict(self.headers), timeout=aiohttp.ClientTimeout(total=self.timeout)
        )

    async def stop(self, exception: Exception | None = None) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def url(self, path: str) -> str:
        """`path` joined to base_url (absolute URLs are kept as they are)."""
        if "://" in path or not self.base_url:
            return path
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        """Send one request and read the whole response.

        Raises RuntimeError before start(), aiohttp.ClientError for transport failures and
        TimeoutError when `timeout` (or the `timeout` setting) passes.
        """
        if self.session is None:
            raise RuntimeError(f"{self.name} is not started")
        if json is not None:
            data = _encode(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout is not None else None
        async with self.session.request(
            method, self.url(path), data=data, headers=headers, timeout=client_timeout
        ) as resp:
            return HTTPResponse(resp.status, resp.headers, await resp.read())


class BatchCalls:
    """`call_multiple` of the RPC clients (`HTTPRPCClient`, `WSRPCClient`): the batch made and
    its answer read the same way; each client sends it its own way (`_send_batch`)."""

    def _headers(self, timeout: float | None) -> tuple[dict[str, str], Any]:
        raise NotImplementedError

    async def _send_batch(
        self, calls: list[tuple[str, Any]], headers: dict[str, str], timeout: Any
    ) -> tuple[list[dict[str, Any]], Any]:
        """Send the requests `calls` ((method, params) each) as one batch; (the requests sent,
        the response)."""
        raise NotImplementedError

    async def call_multiple(
        self,
        *requests: dict[str, Any] | tuple[str, Any],
        raise_exception: bool = True,
        abort_on_error: bool = False,
        use_template: bool = False,
        timeout: float | None = None,
    ) -> list[Any]:
        """Send a batch; returns the results in request order.

        A request is `{"method": ..., "params": ...}` or `(method, params)`. With `raise_exception`
        the first error is raised; without, errors come back in the list as RPCError instances.
        `abort_on_error` / `use_template` set the RPC-Batch-Abort-Error / RPC-Batch-Template headers.
        """
        if not requests:
            return []
        headers, timeout = self._headers(timeout)
        if abort_on_error:
            headers[ABORT_ON_ERROR] = "?1"
        if use_template:
            headers[USE_TEMPLATE] = "?1"
        calls = [(r["method"], r.get("params")) if isinstance(r, dict) else r for r in requests]
        batch, response = await self._send_batch(calls, headers, timeout)
        return batch_results(batch, response, raise_exception)


class HTTPRPCClient(BatchCalls, Service):
    """Calls JSON-RPC methods of another server over HTTP (service name "rpc_client").

    The settings are documented where each is declared, below. Dependency: `http` (an HTTPClient).
    """

    service_name = "rpc_client"

    http: HTTPClient
    """The HTTPClient to send through."""
    telemetry: Telemetry | None = None
    """The `Telemetry` whose tracer makes a client span of each call, its context sent in a
    `traceparent` header (none: the process's own tracer provider, when it set one)."""

    path: str = "/public/rpc"
    """The endpoint, under the HTTPClient's `base_url`."""
    timeout: float | None = None
    """Seconds a call may take, when the call gives none (none: the HTTPClient's)."""
    headers: dict = {}  # noqa: RUF012 -- a setting's default, never mutated
    """Sent with every call (an Authorization, say)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._ids = itertools.count(1)
        self._tracing: Tracing | None = None  # from start() on, when the app traces

    async def start(self) -> None:
        if getattr(self, "http", None) is None:  # built in code without its dependency
            raise TypeError(
                f"{self.name} needs an HTTPClient to send through: "
                'HTTPRPCClient(http=HTTPClient(base_url="http://host:port")), the HTTPClient started first'
            )
        self._tracing = tracing_of(self.telemetry)

    def _headers(self, timeout: float | None) -> tuple[dict[str, str], float | None]:
        headers = {"Content-Type": "application/json", **self.headers}
        timeout = timeout if timeout is not None else self.timeout
        deadline = time.time() + timeout if timeout is not None else None
        ctx = current()
        if ctx is not None:
            headers[CORRELATION_ID] = ctx.correlation_id
            deadline = ctx.deadline if deadline is None else min(deadline, ctx.deadline)
        if deadline is not None:
            headers[DEADLINE] = f"{deadline:.3f}"
            timeout = max(0.001, deadline - time.time()) + 0.5  # a little slack: let the server answer its own timeout
        return headers, timeout

    def _request(self, method: str, params: Any, notify: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            body["params"] = params
        if not notify:
            body["id"] = next(self._ids)
        return body

    async def _post(self, body: Any, headers: dict[str, str], timeout: float | None) -> Any:
        if self._tracing is None:
            resp = await self.http.request("POST", self.path, data=_encode(body), headers=headers, timeout=timeout)
        else:
            resp = await self._traced_post(self._tracing, body, headers, timeout)
        if resp.status == 204 or not resp.body:
            return None
        try:
            return resp.json()
        except msgspec.DecodeError:
            raise InternalError(
                f"RPC server answered HTTP {resp.status} with a body that is not JSON", data={"status": resp.status}
            ) from None

    async def _traced_post(self, tracing: Tracing, body: Any, headers: dict[str, str], timeout: float | None) -> Any:
        """`_post` inside a client span named after the method ("batch" for a batch)."""
        from kaiju.http.spans import answered, client_span

        name = body["method"] if isinstance(body, dict) else "batch"
        url = self.http.url(self.path)
        with client_span(tracing, name, "POST", url, headers, **{"rpc.system": "jsonrpc", "rpc.method": name}) as span:
            resp = await self.http.request("POST", self.path, data=_encode(body), headers=headers, timeout=timeout)
            answered(span, resp.status)
        return resp

    async def call(
        self, method: str, params: dict | list | None = None, nowait: bool = False, timeout: float | None = None
    ) -> Any:
        """Call one method and return its result; with `nowait`, send it as a notification and return None.

        Raises the RPCError subclass the server answered with (by `data.type`), InternalError for
        a reply that is not JSON-RPC, aiohttp.ClientError / TimeoutError for transport failures.
        """
        headers, timeout = self._headers(timeout)
        response = await self._post(self._request(method, params, nowait), headers, timeout)
        if nowait:
            return None
        return _unwrap(response)

    async def _send_batch(
        self, calls: list[tuple[str, Any]], headers: dict[str, str], timeout: float | None
    ) -> tuple[list[dict[str, Any]], Any]:
        batch = [self._request(method, params) for method, params in calls]
        return batch, await self._post(batch, headers, timeout)


def batch_results(batch: list[dict[str, Any]], response: Any, raise_exception: bool) -> list[Any]:
    """The result of each request of `batch` from the batch's `response`, in the batch's order:
    a result, or the RPCError (raised instead when `raise_exception`); the whole batch refused
    raises its error."""
    if isinstance(response, dict):  # the whole batch was refused
        refused = _unwrap(response, raise_exception=False) if "error" in response else None
        raise refused or InternalError("Malformed batch response")
    by_id = {r.get("id"): r for r in response or () if isinstance(r, dict)}
    results = []
    for req in batch:
        item = by_id.get(req["id"])
        value = _unwrap(item, raise_exception) if item is not None else InternalError("No response for this request")
        if raise_exception and isinstance(value, RPCError):
            raise value
        results.append(value)
    return results


def _unwrap(response: Any, raise_exception: bool = True) -> Any:
    if not isinstance(response, dict) or ("result" not in response and "error" not in response):
        exc: RPCError = InternalError("Malformed JSON-RPC response", data={"response": response})
    elif "error" in response:
        exc = error_from_dict(response["error"])
    else:
        return response["result"]
    if raise_exception:
        raise exc
    return exc
