"""Answer: what the RPC core returns for a request or a batch, and the one encoder of answers.

`RPCServer.handle` returns an `Answer` for every caller and every kind of request: the
response (or the list of responses of a batch; None when nothing is to be sent back), the
response headers (Correlation-Id, and Session-Id when the request named a session or a
method changed it), and the body: the response as JSON. Transports read what they need
from it as data: the HTTP server its body and the session it names (for the cookie), a
stream listener the outcome of each request (to acknowledge or redeliver), tests its
`outcomes`. The body is made by the server's one `AnswerEncoder`: a result that cannot be
encoded becomes an `InternalError` there (in the response too), the one place that knows how.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from kaiju.rpc import errors as E
from kaiju.rpc.protocol import SESSION_ID, ErrorResponse, Response

__all__ = ["Answer", "AnswerEncoder", "encode_value"]

_UNENCODABLE = (TypeError, ValueError, RecursionError)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, str):  # a str subclass (a checked setting's type): its text
        return str(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


# what results encode with: Structs, dataclasses, UUIDs, datetimes, Decimals, sets
encode_value = msgspec.json.Encoder(enc_hook=_enc_hook).encode


class Answer(msgspec.Struct, gc=False):
    """The answer to one request or batch (a msgspec Struct: made once per request, cheaply).

    `response` is a `Response`, an `ErrorResponse`, the list of them for a batch, or None
    when nothing is answered (notifications only); `headers` are the response headers;
    `body` is the response as JSON (None for none), made by the `AnswerEncoder` with the
    answer. An Answer unpacks as `(body, headers)`, what a transport sends.
    """

    response: Any
    headers: dict[str, str]
    body: bytes | None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.body, self.headers))

    @property
    def responses(self) -> list[Response | ErrorResponse]:
        """The responses, one per answered request."""
        response = self.response
        if response is None:
            return []
        return response if type(response) is list else [response]

    @property
    def outcomes(self) -> list[str]:
        """The outcome of each answered request: "ok", or the error's type (`data.type`)."""
        return [_error_type(r.error) if type(r) is ErrorResponse else "ok" for r in self.responses]

    @property
    def error(self) -> dict[str, Any] | None:
        """The first error object among the responses, or None when every request succeeded."""
        for r in self.responses:
            if type(r) is ErrorResponse:
                return r.error
        return None

    @property
    def session_id(self) -> str | None:
        """The session the answer names (a login's new one; "" when the session named is gone
        or was logged out), or None when it names none."""
        return self.headers.get(SESSION_ID)


def _error_type(error: dict[str, Any]) -> str:
    data = error.get("data")
    return data.get("type", "RPCError") if type(data) is dict else "RPCError"


class AnswerEncoder:
    """Makes answers: the response and its JSON body. A response that cannot be encoded (a
    method's result the encoder does not know) is answered `InternalError` instead, and
    logged by `logger`; with `debug`, that error carries the exception and its traceback.

    The plain request's path encodes with `encode_value` itself and comes here only when
    that fails (`answer` does the same, for every other answer)."""

    __slots__ = ("logger", "debug")

    def __init__(self, logger: Any, debug: bool = False):
        self.logger = logger
        self.debug = debug

    def answer(self, response: Any, headers: dict[str, str]) -> Answer:
        """The Answer of `response` (a response, a list of them, or None) with `headers`."""
        if response is None:
            return Answer(None, headers, None)
        try:
            return Answer(response, headers, encode_value(response))
        except _UNENCODABLE as exc:
            if type(response) is list:
                response = [self._encodable(r) for r in response]
            else:
                response = ErrorResponse(id=response.id, error=self.unencodable(exc))
            return Answer(response, headers, encode_value(response))

    def _encodable(self, response: Any) -> Any:
        try:
            encode_value(response)
        except _UNENCODABLE as exc:
            return ErrorResponse(id=response.id, error=self.unencodable(exc))
        return response

    def unencodable(self, exc: Exception) -> dict[str, Any]:
        """The error object for a result that cannot be encoded as JSON (logged: a method's bug)."""
        self.logger.error("RPC result cannot be encoded", exc_info=exc)
        return E.InternalError("Internal error: the result cannot be encoded", base_exc=exc).to_dict(self.debug)
