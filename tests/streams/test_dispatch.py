"""The pure helpers between a stream message and the dispatcher."""

from __future__ import annotations

from kaiju.rpc.answer import Answer, AnswerEncoder
from kaiju.rpc.protocol import ErrorResponse, Response
from kaiju.streams.dispatch import OK, outcome_of

_encoder = AnswerEncoder(logger=None)


def answer(response: object) -> Answer:
    return _encoder.answer(response, {})


def test_outcomes_are_read_from_the_answer() -> None:
    assert outcome_of(answer(None)) is OK
    assert outcome_of(answer(Response(None, {"error": 1}))) is OK
    failed = outcome_of(answer(ErrorResponse(id=None, error={"code": -32603, "message": "boom"})))
    assert failed.error["message"] == "boom" and not failed.permanent
    bad = outcome_of(answer([Response(0, 1), ErrorResponse(id=1, error={"code": -32602, "message": "params"})]))
    assert bad.error["code"] == -32602 and bad.permanent


def test_an_error_object_takes_its_code_and_type_from_the_error_class() -> None:
    from kaiju.rpc.errors import InternalError, RequestTimeout
    from kaiju.streams.dispatch import error_object

    assert error_object(RequestTimeout, "late", deadline="1.0") == {
        "code": RequestTimeout.code, "message": "late", "data": {"type": "RequestTimeout", "deadline": "1.0"}
    }
    assert error_object(InternalError, "given up", type="MaxDeliveries")["data"] == {"type": "MaxDeliveries"}
