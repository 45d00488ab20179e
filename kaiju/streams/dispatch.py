"""How a stream message becomes a dispatcher call, and what the answer says about it.

Producers write one-way requests (JSON-RPC notifications). The dispatcher runs a lone
notification in the background and answers nothing, so a listener that passed it on as is
could neither wait for it to finish (it must, before acknowledging) nor see it fail (it
must, to redeliver or dead-letter it). The listener therefore gives every notification an
id on the way in and reads the errors out of the response, which it then drops. Pure
functions, no I/O.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kaiju.rpc.errors import InternalError, InvalidParams, InvalidRequest, JSONParseError, RPCError
from kaiju.rpc.protocol import UNREADABLE, unreadable

__all__ = ["MESSAGE_ID", "Outcome", "as_request", "error_object", "response_error", "PERMANENT_ERRORS"]

# The header naming the message on every delivery, `<stream>/<id>`: the key to deduplicate on.
MESSAGE_ID = "Message-Id"

# Errors that no redelivery can cure: the message is not a valid request at all.
PERMANENT_ERRORS = frozenset({JSONParseError.code, InvalidRequest.code, InvalidParams.code})

# How StreamProducer writes a request; with no "id" anywhere in it, it is a notification.
_PRODUCER_PREFIX = b'{"jsonrpc":"2.0","method":'


class _Envelope(msgspec.Struct):
    method: str
    id: Any = msgspec.UNSET
    params: msgspec.Raw = msgspec.Raw(b"")


class _Answer(msgspec.Struct):
    error: dict[str, Any] | None = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_any = msgspec.json.Decoder().decode
_decode_answer = msgspec.json.Decoder(_Answer).decode
_decode_answers = msgspec.json.Decoder(list[_Answer]).decode
_decode_raw_items = msgspec.json.Decoder(list[msgspec.Raw]).decode


class Outcome(msgspec.Struct, frozen=True):
    """What came of one message: `error` is None on success, else a JSON-RPC error object;
    `permanent` says no redelivery can cure it."""

    error: dict[str, Any] | None = None
    permanent: bool = False


OK = Outcome()


def error_object(error: type[RPCError], message: str, **data: Any) -> dict[str, Any]:
    """A JSON-RPC error object with the code and type name of `error`; `data` adds fields
    (a `type` in it overrides the class name)."""
    return {"code": error.code, "message": message, "data": {"type": error.__name__, **data}}


def as_request(body: bytes) -> bytes | list[Any]:
    """`body` with an id on every request that has none, so the dispatcher answers each one.

    A lone request stays bytes (the dispatcher's fast path): when it has no id, `"id":0`
    is spliced in after the opening brace (safe: the decode just proved a top-level object
    with a `method` and no `id`). A batch is decoded and its notifications get ids. Anything
    else (not JSON, invalid UTF-8, nested too deeply) is returned as is, for the dispatcher to
    reject with a proper error; this never raises.
    """
    if body.startswith(_PRODUCER_PREFIX) and b'"id"' not in body:
        return b'{"id":0,' + body[1:]  # the common case, without decoding
    try:
        env = _decode_envelope(body)
    except UNREADABLE:  # msgspec's errors, invalid UTF-8, deep nesting: the dispatcher says which
        try:
            batch = _decode_any(body)
        except UNREADABLE:
            return _raw_batch_with_ids(body)
        if type(batch) is not list:
            return body
        for n, item in enumerate(batch):
            if type(item) is dict and "id" not in item and "method" in item:
                item["id"] = n
        return batch
    if env.id is not msgspec.UNSET:
        return body
    start = body.index(b"{") + 1
    return b'{"id":0,' + body[start:]


def _raw_batch_with_ids(body: bytes) -> bytes:
    """A batch that does not decode as a whole (an item with invalid UTF-8 or nested too deeply),
    item by item: every notification among its items gets an id, so its error is answered too.
    Anything else is returned as is."""
    if body.lstrip()[:1] != b"[":
        return body
    try:
        items = _decode_raw_items(body)
    except UNREADABLE:
        return body
    out = []
    for n, item in enumerate(items):
        raw = bytes(item)
        try:
            notification = _decode_envelope(raw).id is msgspec.UNSET
        except UNREADABLE as exc:
            notification = getattr(unreadable(raw, exc), "request_id", None) is msgspec.UNSET
        out.append(b'{"id":%d,' % n + raw.lstrip()[1:] if notification else raw)
    return b"[" + b",".join(out) + b"]"


def response_error(response: bytes | None) -> Outcome:
    """The first error in a dispatcher response (single or batch), or `OK`."""
    if not response or b'"error"' not in response:
        return OK
    try:
        answers = _decode_answers(response) if response.lstrip()[:1] == b"[" else [_decode_answer(response)]
    except UNREADABLE:
        return Outcome(error_object(InternalError, "unreadable dispatcher response"))
    for answer in answers:
        if answer.error is not None:
            return Outcome(answer.error, answer.error.get("code") in PERMANENT_ERRORS)
    return OK
