"""Requests off the hot path: already-decoded bodies, malformed requests, and batches.

Mixed into `RPCServer`. A batch runs its requests concurrently (each under a copy of the
batch's context), or one by one in order with RPC-Batch-Abort-Error / RPC-Batch-Template.
Every item that is not a notification gets a response, in the batch's order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from msgspec import UNSET

from kaiju.rpc import errors as E
from kaiju.rpc.context import RequestContext
from kaiju.rpc.protocol import ErrorResponse, RawRequest, Request, RequestHeaders, Response, fill_template, parse_request

__all__ = ["Batches"]

_decode_request = msgspec.json.Decoder(RawRequest).decode
_decode_any = msgspec.json.Decoder().decode


class Batches:
    """Mixed into RPCServer: single requests that need the general path, and batches."""

    max_batch_size: int
    _debug: bool
    _enc: Any

    async def _single_slow(self, ctx: RequestContext, body: Any, h: RequestHeaders) -> bytes | None:
        try:
            req = parse_request(body)
        except E.InvalidRequest as exc:
            return self._enc(ErrorResponse(id=getattr(exc, "request_id", None), error=exc.to_dict()))
        if req.id is UNSET:
            self._notify(ctx, req, False, h)
            return None
        response = await self._item(ctx, req, False, h.retries)
        return self._encode_response(response)

    def _encode_response(self, response: Any) -> bytes:
        try:
            return self._enc(response)
        except (TypeError, ValueError) as exc:
            if type(response) is list:
                return self._enc([self._encodable(r) for r in response])
            return self._enc(ErrorResponse(id=response.id, error=self._unencodable(exc)))

    def _encodable(self, response: Any) -> Any:
        try:
            self._enc(response)
            return response
        except (TypeError, ValueError) as exc:
            return ErrorResponse(id=response.id, error=self._unencodable(exc))

    async def _item(self, ctx: RequestContext, req: Any, raw: bool, retries: int) -> Response | ErrorResponse:
        try:
            m = self._resolve(req.method, ctx.scope, ctx.session)
            result = await self._run(ctx, m, req.params, raw, retries)
        except E.RPCError as exc:
            return ErrorResponse(id=None if req.id is UNSET else req.id, error=exc.to_dict(self._debug))
        return Response(id=None if req.id is UNSET else req.id, result=result)

    def _parse_item(self, item: Any, raw: bool) -> Any:
        """A batch item as a request, or an ErrorResponse when it is not one."""
        try:
            if raw:
                try:
                    return _decode_request(item)
                except (msgspec.ValidationError, msgspec.DecodeError):
                    item = _decode_any(item)
            req = parse_request(item)
        except E.InvalidRequest as exc:
            return ErrorResponse(id=getattr(exc, "request_id", None), error=exc.to_dict())
        return req

    async def _batch(self, ctx: RequestContext, items: list, raw: bool, h: RequestHeaders) -> bytes | None:
        if not items:
            return self._enc(ErrorResponse(id=None, error=E.InvalidRequest("Invalid request: empty batch").to_dict()))
        if len(items) > self.max_batch_size:
            error = E.InvalidRequest(f"Invalid request: more than {self.max_batch_size} requests in a batch")
            return self._enc(ErrorResponse(id=None, error=error.to_dict()))
        reqs = [self._parse_item(item, raw) for item in items]
        if h.abort_on_error or h.use_template:
            responses = await self._batch_in_order(ctx, reqs, raw, h)
        else:
            responses = await asyncio.gather(*(
                self._item(ctx.copy(), r, raw, h.retries) if type(r) is not ErrorResponse else _ready(r) for r in reqs
            ))
            responses = [resp for req, resp in zip(reqs, responses) if type(req) is ErrorResponse or req.id is not UNSET]
        return self._encode_response(responses) if responses else None

    async def _batch_in_order(self, ctx: RequestContext, reqs: list, raw: bool, h: RequestHeaders) -> list:
        responses: list = []
        results: dict[int, Any] = {}
        failed = False
        for n, req in enumerate(reqs):
            if type(req) is ErrorResponse:
                response = req
            elif failed:
                response = ErrorResponse(id=None if req.id is UNSET else req.id, error=E.Aborted().to_dict())
            else:
                if h.use_template:
                    try:
                        params = req.params
                        if raw and params is not UNSET:
                            params = _decode_any(params)
                        req = Request(method=req.method, id=req.id, params=fill_template(params, results))
                    except E.RPCError as exc:
                        req_id = None if req.id is UNSET else req.id
                        responses.append(ErrorResponse(id=req_id, error=exc.to_dict()))
                        failed = h.abort_on_error
                        continue
                response = await self._item(ctx.copy(), req, raw and not h.use_template, h.retries)
                if type(response) is Response:
                    results[n] = response.result
            if type(response) is ErrorResponse:
                failed = failed or h.abort_on_error
            if type(req) is ErrorResponse or req.id is not UNSET:
                responses.append(response)
        return responses


async def _ready(value: Any) -> Any:
    return value
