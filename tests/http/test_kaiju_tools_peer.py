"""kaiju's HTTPRPCClient calling a real kaiju-tools 2.4.26 server (the peer app in
shared/peers, made by its setup.sh; skipped where that folder is not beside the checkout)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from kaiju import rpc
from kaiju.http.client import HTTPClient, HTTPRPCClient
from kaiju.testing import free_port
from kaiju.testing.services import started

ROOT = Path(__file__).resolve().parents[2]
PEERS = next((d / "shared" / "peers" for d in ROOT.parents if (d / "shared" / "peers" / "setup.sh").exists()), None)


@pytest.fixture(scope="module")
def peer_python() -> str:
    if PEERS is None:
        pytest.skip("no shared/peers folder beside this checkout")
    made = subprocess.run([str(PEERS / "setup.sh")], capture_output=True, text=True, timeout=600)
    if made.returncode != 0:
        pytest.skip(f"the kaiju-tools peer could not be installed: {made.stderr[-500:]}")
    return made.stdout.strip()


async def test_http_rpc_client_calls_a_kaiju_tools_server(peer_python):
    port = free_port()
    proc = subprocess.Popen(
        [peer_python, "run.py", "-e", f"PEER_PORT={port}"], cwd=PEERS / "kaiju_tools_app",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        http = HTTPClient(base_url=f"http://127.0.0.1:{port}")
        client = HTTPRPCClient()
        async with started(http, client):

            async def up() -> bool:
                try:
                    return await client.call("echo.echo", {"data": 0}) == 0
                except OSError:
                    return False

            for _ in range(300):
                if await up():
                    break
                assert proc.poll() is None, "the kaiju-tools app exited"
                await asyncio.sleep(0.1)
            assert await client.call("echo.echo", {"data": {"a": [1, 2]}}) == {"a": [1, 2]}
            assert await client.call_multiple(("echo.echo", {"data": 1}), ("echo.echo", {"data": 2})) == [1, 2]
            with pytest.raises(rpc.MethodNotFound):
                await client.call("echo.nope")
            with pytest.raises(rpc.InvalidParams):
                await client.call("echo.echo", {"dat": 1})
    finally:
        proc.terminate()
        proc.wait(10)
