"""What the answer to a stream message says about it: acknowledge, redeliver or dead-letter.

Producers write one-way requests (JSON-RPC notifications). The listener hands a message to
`RPCServer.handle(..., wait_notifications=True)`: every request of it, notifications
included, runs in the listener's task and is answered, so the listener can wait for the
message to be done (it must, before acknowledging) and read how each request ended from
the `Answer` (it must, to redeliver or dead-letter it). Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kaiju.rpc.errors import InvalidParams, InvalidRequest, JSONParseError, RPCError

__all__ = [
    "ACKED",
    "DEAD_LETTERED",
    "MESSAGE_ID",
    "OK",
    "PERMANENT_ERRORS",
    "RETRIED",
    "Delivery",
    "Outcome",
    "error_object",
    "outcome_of",
]

# The header naming the message on every delivery, `<stream>/<id>`: the key to deduplicate on.
MESSAGE_ID = "Message-Id"

# Errors that no redelivery can cure: the message is not a valid request at all.
PERMANENT_ERRORS = frozenset({JSONParseError.code, InvalidRequest.code, InvalidParams.code})


class Outcome(msgspec.Struct, frozen=True):
    """What came of one message: `error` is None on success, else a JSON-RPC error object;
    `permanent` says no redelivery can cure it."""

    error: dict[str, Any] | None = None
    permanent: bool = False


OK = Outcome()

# What the listener did with a message: acknowledged it, left it pending for a redelivery,
# or copied it to the dead-letter stream.
ACKED, RETRIED, DEAD_LETTERED = "acked", "retried", "dead_lettered"


class Delivery(msgspec.Struct, frozen=True):
    """What came of one delivery of a message: `outcome` (`ACKED`, `RETRIED` or
    `DEAD_LETTERED`) and, unless acked, the JSON-RPC error object saying why."""

    outcome: str
    error: dict[str, Any] | None = None


def error_object(error: type[RPCError], message: str, **data: Any) -> dict[str, Any]:
    """A JSON-RPC error object with the code and type name of `error`; `data` adds fields
    (a `type` in it overrides the class name)."""
    return {"code": error.code, "message": message, "data": {"type": error.__name__, **data}}


def outcome_of(answer: Any) -> Outcome:
    """The outcome of a message from the dispatcher's `Answer`: its first error, or `OK`."""
    error = answer.error
    if error is None:
        return OK
    return Outcome(error, error.get("code") in PERMANENT_ERRORS)
