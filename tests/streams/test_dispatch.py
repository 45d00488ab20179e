"""The pure helpers between a stream message and the dispatcher."""

from __future__ import annotations

import msgspec

from kaiju.streams.dispatch import OK, as_request, response_error

decode = msgspec.json.decode


def test_a_notification_gets_an_id_and_keeps_the_rest() -> None:
    for body in (b'{"jsonrpc":"2.0","method":"a.b","params":{"x":1}}', b' {"method":"a.b","params":{"id":1}}'):
        out = decode(as_request(body))
        assert out["id"] == 0 and {k: v for k, v in out.items() if k != "id"} == decode(body)


def test_a_request_with_an_id_and_a_bad_body_pass_unchanged() -> None:
    for body in (b'{"jsonrpc":"2.0","method":"a.b","id":7}', b"not json", b'{"no":"method"}', b"1"):
        assert as_request(body) == body


def test_batch_notifications_get_ids() -> None:
    out = as_request(b'[{"method":"a"},{"method":"b","id":"x"},5]')
    assert out == [{"method": "a", "id": 0}, {"method": "b", "id": "x"}, 5]


def test_response_errors() -> None:
    assert response_error(None) is OK
    assert response_error(b'{"jsonrpc":"2.0","id":0,"result":{"error":1}}') is OK
    failed = response_error(b'{"jsonrpc":"2.0","id":0,"error":{"code":-32603,"message":"boom"}}')
    assert failed.error["message"] == "boom" and not failed.permanent
    bad = response_error(b'[{"id":0,"result":1},{"id":1,"error":{"code":-32602,"message":"params"}}]')
    assert bad.error["code"] == -32602 and bad.permanent


def test_an_error_object_takes_its_code_and_type_from_the_error_class() -> None:
    from kaiju.rpc.errors import InternalError, RequestTimeout
    from kaiju.streams.dispatch import error_object

    assert error_object(RequestTimeout, "late", deadline="1.0") == {
        "code": RequestTimeout.code, "message": "late", "data": {"type": "RequestTimeout", "deadline": "1.0"}
    }
    assert error_object(InternalError, "given up", type="MaxDeliveries")["data"] == {"type": "MaxDeliveries"}
