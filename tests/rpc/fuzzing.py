"""Fuzzing the dispatcher: valid seed bodies, hostile mutations of them, and the invariant
every answer must keep. Shared by tests/test_fuzz.py (hypothesis, in-process) and
bench/fuzz_http.py (a real HTTP server)."""

from __future__ import annotations

import random
from typing import Any

import msgspec

from kaiju.rpc.protocol import UNREADABLE, not_json, unreadable, why_unreadable

__all__ = ["HEADER_NAMES", "HOSTILE", "SEEDS", "mutate", "violation"]

SEEDS: list[bytes] = [
    b'{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"data":[1,"a",{"b":null}]}}',
    b'{"jsonrpc":"2.0","id":"s","method":"echo.echo","params":["x"]}',
    b'{"jsonrpc":"2.0","method":"echo.echo","params":{"data":1}}',
    b'{"jsonrpc":"2.0","id":null,"method":"echo.echo"}',
    b'{"jsonrpc":"2.0","id":2.5,"method":"echo.nothing","params":{}}',
    b'[{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"data":1}},'
    b'{"jsonrpc":"2.0","method":"echo.echo","params":{"data":2}},{"id":3}]',
    b'{"jsonrpc":"2.0","id":4,"method":"rpc.api","params":{"pattern":"echo.*"}}',
]

# Fragments a hostile client sends: broken UTF-8, deep nesting, numbers out of range,
# stray quotes and escapes, control bytes, odd literals.
HOSTILE: list[bytes] = [
    b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\\", b'"', b'\\"', b"\\u", b"\\ud800",
    b"[" * 1000, b"]" * 1000, b"{" * 600, b'{"a":' * 700, b"[" * 990 + b"]" * 990,
    b"1e400", b"-1e400", b"1" * 4301, b"-" + b"9" * 5000, b"0.0000000000000000000000001e-400", b"NaN", b"Infinity",
    b"true", b"null", b"{}", b"[]", b",", b":", b'"id":', b'"id":7,', b'"params":', b'"method":"echo.echo",',
]

_raw_items = msgspec.json.Decoder(list[msgspec.Raw]).decode

HEADER_NAMES = [
    "Timeout", "Deadline", "RPC-Retries", "RPC-Batch-Abort-Error", "RPC-Batch-Template", "Correlation-Id",
    "Session-Id", "Authorization", "X-Other",
]


def mutate(rng: random.Random, body: bytes) -> bytes:
    """`body` with one to three random mutations: hostile fragments inserted or replacing a
    span, bytes flipped, a cut, a duplicated span."""
    for _ in range(rng.randint(1, 3)):
        n = len(body)
        at = rng.randint(0, n)
        kind = rng.randrange(6)
        if kind == 0:
            body = body[:at] + rng.choice(HOSTILE) + body[at:]
        elif kind == 1:
            end = min(n, at + rng.randint(0, 12))
            body = body[:at] + rng.choice(HOSTILE) + body[end:]
        elif kind == 2 and n:
            i = rng.randrange(n)
            body = body[:i] + bytes([rng.randrange(256)]) + body[i + 1:]
        elif kind == 3:
            body = body[:at]
        elif kind == 4:
            end = min(n, at + rng.randint(1, 40))
            body = body[:end] + body[at:end] * rng.randint(1, 50) + body[end:]
        else:
            value = rng.choice(HOSTILE)
            body = body.replace(b'"x"', b'"' + value + b'"', 1) if rng.random() < 0.5 else body.replace(b"1", value, 1)
    return body


def _is_notification(item: Any) -> bool:
    """Whether a decoded item is a valid JSON-RPC notification (it gets no answer)."""
    return (
        type(item) is dict and "id" not in item and item.get("jsonrpc") == "2.0" and type(item.get("method")) is str
        and ("params" not in item or item["params"] is None or type(item["params"]) in (dict, list))
    )


def _expected_silence(body: bytes) -> bool | None:
    """True when `body` must get no answer (notifications only), False when it must get one,
    None when either is right (an undecodable body that is a notification with bad params)."""
    try:
        decoded = msgspec.json.decode(body)
    except UNREADABLE as exc:
        if not_json(why_unreadable(exc)):
            return False  # not JSON at all: a parse error, always answered (never a notification)
        # JSON holding a value the decoder refuses (a number out of range, deep nesting): an
        # object with such an unknown member and no id may run as a notification (no answer)
        # or be refused (an answer). With a readable id, or not an object at all, it must be
        # answered.
        start = body.lstrip()[:1]
        if start == b"[":  # a batch: answered unless each of its items may go unanswered
            try:
                items = _raw_items(body)
            except UNREADABLE:
                return False
            return None if items and all(_expected_silence(bytes(i)) is not False for i in items) else False
        if start != b"{":
            return False
        req_id = getattr(unreadable(body, exc), "request_id", None)
        return False if req_id is not None and req_id is not msgspec.UNSET else None
    if type(decoded) is list:
        if not decoded:
            return False
        if all(type(i) is dict and "id" not in i for i in decoded):
            return None if all(_is_notification(i) for i in decoded) else False
        return False
    return _is_notification(decoded)


def violation(body: bytes, status: int | None, answer: bytes | None) -> str | None:
    """What is wrong with `answer` (HTTP `status`; None in-process) to `body`, or None when it
    is a valid JSON-RPC answer: nothing for notifications only; else a response (or a list of
    them) with an id and exactly one of result and error, never an InternalError (-32603:
    client input only goes to the echo method here) and never an HTTP error status."""
    silent = _expected_silence(body)
    if not answer:
        if status not in (None, 204):
            return f"no body with HTTP {status}"
        return "no answer to a request" if silent is False else None
    if status not in (None, 200):
        return f"HTTP {status}"
    if silent is True:
        return "an answer to a notification"
    try:
        decoded = msgspec.json.decode(answer)
    except UNREADABLE:
        return "the answer is not JSON"
    items = decoded if type(decoded) is list else [decoded]
    if not items:
        return "an empty list answered"
    for item in items:
        if type(item) is not dict or item.get("jsonrpc") != "2.0" or "id" not in item:
            return f"not a JSON-RPC response: {item!r:.200}"
        if ("result" in item) == ("error" in item):
            return "neither or both of result and error"
        error = item.get("error")
        if error is not None:
            if type(error) is not dict or type(error.get("code")) is not int or type(error.get("message")) is not str:
                return f"malformed error: {error!r:.200}"
            if error["code"] == -32603:
                return f"InternalError for client input: {error!r:.300}"
    return None
