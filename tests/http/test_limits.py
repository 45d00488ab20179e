"""HTTPServer's connection limits against a real server: slow and idle clients are cut, the
connection cap sheds idle connections with one warning, accept failures log no tracebacks."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest
import msgspec

from kaiju import rpc
from kaiju.http.server import HTTPServer
from kaiju.rpc import RPCServer, Scope
from kaiju.runtime.service import Service
from kaiju.testing import OutputLines, eventually, free_port
from kaiju.testing.services import started

REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"gate.ping"}'

JSON = {"Content-Type": "application/json"}


class Gate(Service):
    """`gate.wait` answers once the test opens the gate: a request in flight for as long as needed."""

    service_name = "gate"

    async def start(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    @rpc.method(permission=Scope.GUEST)
    async def ping(self) -> str:
        return "pong"

    @rpc.method(permission=Scope.GUEST)
    async def wait(self) -> str:
        self.entered.set()
        await self.open.wait()
        return "through"


def serve(**settings):
    return started(Gate(), RPCServer(), HTTPServer(port=free_port(), **settings))


def http_request(server: HTTPServer, body: bytes = REQUEST) -> bytes:
    head = f"POST {server.rpc_path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """Read until the server closes the connection; fail loudly if it has not after `timeout`."""
    received = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {timeout}s") from None
    return received


def cap_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "connection cap" in r.getMessage()]


async def test_slowloris_is_cut_after_the_header_timeout():
    async with serve(header_timeout=0.3, idle_timeout=60) as app:
        server = app.services["http"]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.socket.getsockname()[1])

        async def drip():
            for byte in http_request(server):
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(drip())
        try:
            received = await closed_by_server(reader)
        finally:
            dripping.cancel()
            writer.close()
        assert received == b""  # cut before its headers were complete, never served


async def test_idle_keepalive_connection_is_closed_after_the_idle_timeout():
    async with serve(idle_timeout=0.3, header_timeout=60) as app:
        server = app.services["http"]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.socket.getsockname()[1])
        writer.write(http_request(server))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"close" not in head.lower()
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        assert msgspec.json.decode(await reader.readexactly(length))["result"] == "pong"
        try:
            assert await closed_by_server(reader) == b""
        finally:
            writer.close()


async def test_a_body_that_does_not_arrive_is_cut_after_the_body_timeout():
    async with serve(body_timeout=0.3, header_timeout=60, idle_timeout=60) as app:
        server = app.services["http"]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.socket.getsockname()[1])
        whole = http_request(server)
        writer.write(whole[:-10])  # headers and most of the body; the rest never comes
        try:
            assert await closed_by_server(reader) == b""
        finally:
            writer.close()


async def test_keepalive_connection_keeps_serving_within_its_limits():
    async with serve(header_timeout=0.2) as app:
        server = app.services["http"]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for _ in range(3):  # one connection, reused after its first request's header deadline
                async with session.post(server.url, data=REQUEST, headers=JSON) as resp:
                    assert (await resp.json())["result"] == "pong"
            await asyncio.sleep(0.3)  # past header_timeout: the timer must be gone with the first request
            async with session.post(server.url, data=REQUEST, headers=JSON) as resp:
                assert (await resp.json())["result"] == "pong"
            assert len(server.runner.server.connections) == 1


async def test_past_the_cap_idle_connections_make_way_and_one_warning_is_logged(caplog):
    caplog.set_level(logging.WARNING)
    async with serve(max_connections=5, header_timeout=60, idle_timeout=60) as app:
        server, gate = app.services["http"], app.services["gate"]
        port = server.socket.getsockname()[1]
        async with aiohttp.ClientSession() as session:
            busy = asyncio.create_task(session.post(server.url, data=b'{"jsonrpc":"2.0","id":1,"method":"gate.wait"}', headers=JSON))
            await asyncio.wait_for(gate.entered.wait(), 10)
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
            await eventually(lambda: len(server.runner.server.open) <= 5, what="the server to hold no more than 5 connections")
            async with aiohttp.ClientSession() as fresh, fresh.post(server.url, data=REQUEST, headers=JSON) as resp:
                assert resp.status == 200 and (await resp.json())["result"] == "pong"
            gate.open.set()
            async with await busy as resp:  # a request in flight is never the one closed
                assert (await resp.json())["result"] == "through"
            for _, writer in idle:
                writer.close()
    assert len(cap_warnings(caplog)) == 1, [r.getMessage() for r in cap_warnings(caplog)]


async def test_accept_failures_log_one_warning_without_traceback(caplog):
    caplog.set_level(logging.WARNING)
    async with serve() as app:
        server = app.services["http"]
        loop = asyncio.get_running_loop()
        handler = loop.get_exception_handler()
        assert handler is not None
        for _ in range(50):  # what asyncio reports for each accept that finds no free descriptor
            loop.call_exception_handler({"message": "socket.accept() out of system resource", "exception": OSError(errno.EMFILE, "Too many open files"), "socket": server.socket})
        records = [r for r in caplog.records if "cannot accept" in r.getMessage()]
        assert len(records) == 1 and records[0].levelno == logging.WARNING and records[0].exc_info is None
    # stopping puts the previous handler back once asyncio's accept retry (a second) has passed
    await eventually(lambda: loop.get_exception_handler() is not handler, timeout=10, what="the previous handler back")


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from kaiju.http.server import HTTPServer
    from kaiju.rpc import RPCServer
    from kaiju.testing.services import started

    async def main():
        async with started(RPCServer(), HTTPServer(port=0, warning_interval=600)) as app:
            held = []
            try:
                while True:
                    held.append(os.open(os.devnull, os.O_RDONLY))  # use up every descriptor
            except OSError:
                pass
            print(app.services["http"].socket.getsockname()[1], flush=True)
            await asyncio.sleep(float(sys.argv[1]))
            for fd in held:
                os.close(fd)

    asyncio.run(main())
    """
)


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))  # so the child runs out of descriptors quickly


def test_a_process_out_of_descriptors_logs_no_traceback_per_accept(tmp_path: Path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log = tmp_path / "stderr"
    with log.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(script), "3"], stdout=subprocess.PIPE, stderr=stderr, preexec_fn=_low_fd_limit, text=True
        )
    clients: list[socket.socket] = []
    try:
        port = int(OutputLines(child.stdout).until(lambda line: True, timeout=30)[0])
        for _ in range(20):  # queued by the kernel; each accept the child tries fails
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait(timeout=30)
        for sock in clients:
            sock.close()
    err = log.read_text()
    assert child.returncode == 0, err
    assert "Traceback" not in err, err
    assert err.count("cannot accept connections") == 1, err


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [("header_timeout", 0, "got 0"), ("max_connections", 0, "got 0"), ("idle_timeout", "soon", 'got "soon"')],
)
def test_a_bad_limit_is_a_config_error_naming_its_key(setting, value, expected):
    from kaiju.config import ConfigError, load_config_data
    from kaiju.runtime.plan import build_plan

    data = {"main": {"name": "shop"}, "services": [{"cls": "RPCServer"}, {"cls": "HTTPServer", "settings": {setting: value}}]}
    with pytest.raises(ConfigError) as info:
        build_plan(load_config_data(data, source="conf/app.yml", os_env=False))
    text = str(info.value)  # the file, the key path, what was expected and what was found
    assert text.startswith("conf/app.yml: services[") and f"].settings.{setting}: expected " in text and text.endswith(expected)
