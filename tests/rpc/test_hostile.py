"""Client mistakes in the body, against a real HTTP server: each one answered with the right
JSON-RPC error and the request's id where it can be read, never InternalError, never a
traceback in the log."""

from __future__ import annotations

import logging

import aiohttp
import msgspec
import pytest

from kaiju import rpc
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer, Scope, protocol
from kaiju.runtime.service import Service
from kaiju.testing import eventually, free_port
from kaiju.testing.services import started

DEEP = b"[" * 1000 + b"]" * 1000
BIG_INT = b"1" * 4301


class Echo(Service):
    service_name = "echo"

    async def start(self) -> None:
        self.calls = 0

    @rpc.method(permission=Scope.GUEST)
    async def echo(self, data: object = None) -> object:
        self.calls += 1
        return data

    @rpc.method(permission=Scope.GUEST)
    async def add(self, a: int, b: int = 0) -> int:
        self.calls += 1
        return a + b


@pytest.fixture
async def server():
    echo = Echo()
    http = HTTPServer(port=free_port(), max_body_size=1 << 20)
    async with started(echo, RPCServer(), http), aiohttp.ClientSession() as session:
        yield http, echo, session


async def post(session, url, body, headers=None):
    async with session.post(url, data=body, headers={"Content-Type": "application/json", **(headers or {})}) as resp:
        return resp.status, await resp.read()


def request(rid: bytes, method: bytes, params: bytes | None = None, extra: bytes = b"") -> bytes:
    body = b'{"jsonrpc":"2.0","id":' + rid + b',"method":"' + method + b'"'
    if params is not None:
        body += b',"params":' + params
    return body + extra + b"}"


CASES = [
    # (body, code, id, field): what is not JSON (invalid UTF-8 included) is a parse error, with
    # the id when it can still be read; JSON the decoder cannot hold is invalid params
    (request(b"1", b"echo.echo", b'{"data":"\xff\xfe"}'), -32700, 1, None),
    (request(b"2", b"echo.echo", b'["\xc3("]'), -32700, 2, None),
    (request(b"3", b"echo.e\xffcho", b"{}"), -32700, 3, None),
    (request(b'"s"', b"echo.echo", b'{"data":' + DEEP + b"}"), -32602, "s", None),
    (request(b"4", b"echo.echo", DEEP), -32602, 4, None),
    (request(b"5", b"echo.echo", b"{}", b',"extra":' + DEEP), -32700, 5, None),
    (request(DEEP, b"echo.echo"), -32700, None, None),
    (request(b"6", b"echo.echo", b'{"data":1e400}'), -32602, 6, "data"),
    (request(b"7", b"echo.add", b'{"a":' + BIG_INT + b"}"), -32602, 7, "a"),
    (request(b"8", b"echo.add", b"[" + BIG_INT + b"]"), -32602, 8, "a"),
    (request(b"1e400", b"echo.echo"), -32700, None, None),
    (DEEP, -32700, None, None),
    (b'{"jsonrpc":"2.0","id":9,"method":"echo.echo","params":{"data":"\xff"', -32700, 9, None),
]


@pytest.mark.parametrize("body, code, rid, field", CASES, ids=range(len(CASES)))
async def test_client_mistakes_get_their_own_error_with_the_id(server, caplog, body, code, rid, field):
    http, echo, session = server
    with caplog.at_level(logging.DEBUG):
        status, raw = await post(session, http.url, body)
    answer = msgspec.json.decode(raw)
    assert status == 200, raw
    assert answer["id"] == rid and answer["error"]["code"] == code, answer
    if code == -32602:
        assert answer["error"]["data"]["field"] == field, answer
    assert echo.calls == 0
    assert not [r for r in caplog.records if r.levelno > logging.INFO or r.exc_info], caplog.text


@pytest.mark.parametrize("params", [b'{"data":"\xff"}', b'{"data"\t1}', b'{"data":"a\x00b"}', b'{"data":[1,}'])
async def test_a_notification_that_is_not_json_is_answered_with_a_parse_error(server, params):
    http, echo, session = server
    body = b'{"jsonrpc":"2.0","method":"echo.echo","params":' + params + b"}"
    status, raw = await post(session, http.url, body)
    # not a notification: a body that does not parse has no request in it, so it is answered
    assert status == 200, raw
    answer = msgspec.json.decode(raw)
    assert answer["id"] is None and answer["error"]["code"] == -32700, answer
    assert echo.calls == 0


@pytest.mark.parametrize("params", [DEEP, b'{"data":1e400}', b'{"data":' + BIG_INT + b"}"])
async def test_a_broken_notification_is_dropped_quietly(caplog, params):
    echo = Echo()
    http = HTTPServer(port=free_port(), max_body_size=1 << 20)
    body = b'{"jsonrpc":"2.0","method":"echo.echo","params":' + params + b"}"
    with caplog.at_level(logging.DEBUG):
        async with started(echo, RPCServer(), http), aiohttp.ClientSession() as session:
            status, raw = await post(session, http.url, body)
            status2, raw2 = await post(session, http.url, request(b"1", b"echo.add", b"[1,2]"))
            # the dispatcher settles a notification in the background: its outcome is one line at INFO
            await eventually(lambda: outcomes(caplog), what="the notification's outcome in the log")
        # stopped: the server waited for everything it ran in the background, so all it logs is here
    assert status == 204 and raw == b""
    assert msgspec.json.decode(raw2)["result"] == 3
    assert len(outcomes(caplog)) == 1, caplog.text
    assert outcomes(caplog)[0].levelno == logging.INFO
    noisy = [r for r in caplog.records if r.levelno > logging.INFO or r.exc_info]
    assert not noisy, caplog.text
    assert echo.calls == 1  # only the add


def outcomes(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "notification" in r.getMessage()]


async def test_batch_items_answer_their_own_errors(server, caplog):
    http, echo, session = server
    batch = b"[" + b",".join([
        request(b"1", b"echo.echo", b'{"data":"\xff"}'),
        request(b"2", b"echo.add", b"[1,2]"),
        request(b"3", b"echo.add", b"[" + BIG_INT + b"]"),
        request(b"4", b"echo.echo", b'{"data":-1e999}'),
        b'{"jsonrpc":"2.0","method":"echo.echo","params":{"data":1e999}}',  # a notification: no answer
        b'{"jsonrpc":"2.0","method":"echo.echo","params":{"data":"\xff"}}',  # not JSON: a parse error, id null
    ]) + b"]"
    with caplog.at_level(logging.DEBUG):
        status, raw = await post(session, http.url, batch)
    answers = {a["id"]: a for a in msgspec.json.decode(raw)}
    assert status == 200 and len(answers) == 5, answers
    assert answers[2]["result"] == 3
    assert [answers[i]["error"]["code"] for i in (1, 3, 4, None)] == [-32700, -32602, -32602, -32700], answers
    assert not [r for r in caplog.records if r.levelno > logging.INFO or r.exc_info], caplog.text


async def test_a_batch_nested_too_deeply_is_one_parse_error(server):
    http, _, session = server
    status, raw = await post(session, http.url, b"[" + DEEP + b"]")
    answer = msgspec.json.decode(raw)
    assert status == 200 and answer["id"] is None and answer["error"]["code"] == -32700


async def test_templates_refuse_params_that_do_not_decode(server):
    http, echo, session = server
    batch = b"[" + request(b"1", b"echo.add", b"[1]") + b"," + request(b"2", b"echo.echo", b'{"data":"\xff"}') + b"]"
    status, raw = await post(session, http.url, batch, {"RPC-Batch-Template": "?1"})
    answers = {a["id"]: a for a in msgspec.json.decode(raw)}
    assert answers[1]["result"] == 1 and answers[2]["error"]["code"] == -32602


@pytest.mark.parametrize("header, value", [("Timeout", "1e400"), ("RPC-Retries", "9" * 5000), ("Correlation-Id", "a" * 200)])
async def test_a_bad_header_names_itself(server, header, value):
    http, echo, session = server
    status, raw = await post(session, http.url, request(b"5", b"echo.add", b"[1]"), {header: value})
    answer = msgspec.json.decode(raw)
    assert status == 200 and answer["id"] == 5
    assert answer["error"]["code"] == -32600 and answer["error"]["data"]["header"] == header


PATHOLOGICAL = b'{"id":"' + b'\\"' * 250_000  # half a megabyte of escaped quotes, never closed


async def test_a_pathological_body_gets_a_parse_error(server):
    http, _, session = server
    status, raw = await post(session, http.url, PATHOLOGICAL)
    assert status == 200 and msgspec.json.decode(raw)["error"]["code"] == -32700


def scan_reads(body: bytes) -> int:
    """How many bytes the id scan's tokenizer (`protocol._TOKEN`) reads in `body`: each token it
    finds, plus, for each quote it tried as the start of a string and did not match, the rest of
    the body (a failed string match reads to the end before giving up)."""
    reads, covered = 0, 0
    for token in protocol._TOKEN.finditer(body):
        start, end = token.span()
        reads += end - start + sum(len(body) - i for i in range(covered, start) if body[i] == 0x22)
        covered = end
    return reads + sum(len(body) - i for i in range(covered, len(body)) if body[i] == 0x22)


def test_the_id_scan_reads_each_byte_once():
    """Counted, not timed: a scan that rescans from each quote reads the body once per quote."""
    body = PATHOLOGICAL[:10_007]  # 5,000 quotes: a rescan would read 25 million bytes
    assert scan_reads(body) <= len(body)
    assert scan_reads(b'{"id":1,"method":"a\\"b"') == len(b'{"id":1,"method":"a\\"b"') - len(b":1,:")
