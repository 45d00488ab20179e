"""Batches: a list of requests answered by one list of responses.

Items run concurrently, each under a copy of the batch's context; with the
RPC-Batch-Abort-Error or RPC-Batch-Template header they run one by one in order (an
error aborts the rest; `"[N.key]"` strings in params take earlier results). Every item
that is not a notification gets a response, in the batch's order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from kaiju.rpc import errors as E
from kaiju.rpc.context import RequestContext
from kaiju.rpc.dispatch import Dispatcher
from kaiju.rpc.protocol import (
    UNREADABLE,
    ErrorResponse,
    Request,
    RequestHeaders,
    Response,
    fill_template,
    why_unreadable,
)

__all__ = ["run_batch"]


async def run_batch(
    dispatcher: Dispatcher, ctx: RequestContext, items: list, h: RequestHeaders, max_size: int, wait: bool = False
) -> list | ErrorResponse | None:
    """The responses to a batch (None when all were notifications), or one error response for
    an empty batch or one of more than `max_size` requests. A session an item sets (a login)
    becomes `ctx`'s, and so do the response headers its middleware set. With `wait`,
    notifications are answered too (id None), so the caller learns how each one ended."""
    if not items:
        return ErrorResponse(id=None, error=E.InvalidRequest("Invalid request: empty batch").to_dict())
    if len(items) > max_size:
        error = E.InvalidRequest(f"Invalid request: more than {max_size} requests in a batch")
        return ErrorResponse(id=None, error=error.to_dict())
    reqs = [_read(dispatcher.read, item) for item in items]
    contexts = [ctx.copy() for _ in reqs]
    if h.abort_on_error or h.use_template:
        responses = await _in_order(dispatcher, contexts, reqs, h, wait)
    else:
        answers = await asyncio.gather(
            *(
                dispatcher.unreadable(c, r) if isinstance(r, E.RPCError) else dispatcher.request(c, r, h.retries)
                for c, r in zip(contexts, reqs, strict=True)
            )
        )
        # notifications get no answer (unless waited for)
        responses = [a for r, a in zip(reqs, answers, strict=True) if wait or _id(r) is not UNSET]
    for c in contexts:
        if c.session is not ctx.session:
            ctx.session = c.session
        if c.response_headers:
            ctx.response_headers = {**(ctx.response_headers or {}), **c.response_headers}
    return responses or None


def _read(read: Callable[[Any], Any], item: Any) -> Any:
    """A batch item as a request (by `read`), or the RPCError saying why it is not one (its
    `request_id` UNSET for a notification whose params do not decode: not answered)."""
    try:
        return read(item)
    except E.RPCError as exc:
        return exc


async def _in_order(
    dispatcher: Dispatcher, contexts: list[RequestContext], reqs: list, h: RequestHeaders, wait: bool
) -> list:
    responses: list = []
    results: dict[int, Any] = {}
    failed = False
    for n, (ctx, req) in enumerate(zip(contexts, reqs, strict=True)):
        response: Response | ErrorResponse
        if isinstance(req, E.RPCError):
            response = await dispatcher.unreadable(ctx, req)
            req = response
        elif failed:
            response = ErrorResponse(id=None if req.id is UNSET else req.id, error=E.Aborted().to_dict())
        else:
            if h.use_template:
                try:
                    req = Request(method=req.method, id=req.id, params=fill_template(_params(req.params), results))
                except E.RPCError as exc:
                    responses.append(ErrorResponse(id=None if req.id is UNSET else req.id, error=exc.to_dict()))
                    failed = h.abort_on_error
                    continue
            response = await dispatcher.request(ctx, req, h.retries)
            if type(response) is Response:
                results[n] = response.result
        if type(response) is ErrorResponse:
            failed = failed or h.abort_on_error
        if wait or req.id is not UNSET:
            responses.append(response)
    return responses


def _id(item: Any) -> Any:
    """The id of a batch item as `_read` gave it (UNSET: a notification)."""
    return getattr(item, "request_id", None) if isinstance(item, E.RPCError) else item.id


def _params(params: Any) -> Any:
    """A batch item's params decoded, for a template to fill; InvalidParams when they do not
    decode (invalid UTF-8, a number out of range) or nest too deeply to fill."""
    try:
        return msgspec.json.decode(params) if type(params) is Raw else params
    except UNREADABLE as exc:
        reason = why_unreadable(exc)
        raise E.InvalidParams(f"Invalid params: {reason}", data={"field": None, "reason": reason}) from None
