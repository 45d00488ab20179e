"""kaiju's HTTPRPCClient calling a real kaiju-tools 2.4.26 server: the peer app in
shared/peers beside the checkout (CI lays it there), installed by its setup.sh.

Where there is no shared/peers beside the checkout the test cannot apply and is skipped;
where there is one, a peer that fails to install or to answer fails the test, loudly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kaiju import rpc
from kaiju.http.client import HTTPClient, HTTPRPCClient
from kaiju.testing import eventually, free_port
from kaiju.testing.services import started

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT.parent / "shared" / "peers"
START_WAIT = 45.0  # seconds for the peer app to answer its first call (below the test timeout of 60 s)


@pytest.fixture(scope="module")
def peer_python() -> str:
    if not (PEERS / "setup.sh").exists():
        pytest.skip(f"no peers folder at {PEERS} (shared/peers beside the checkout)")
    made = subprocess.run(["bash", str(PEERS / "setup.sh")], capture_output=True, text=True, timeout=600)
    if made.returncode != 0:
        pytest.fail(f"{PEERS / 'setup.sh'} failed ({made.returncode}): {made.stderr[-2000:]}")
    return made.stdout.strip()


async def test_http_rpc_client_calls_a_kaiju_tools_server(peer_python, tmp_path):
    port = free_port()
    log = tmp_path / "peer.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [peer_python, "run.py", "-e", f"PEER_PORT={port}"], cwd=PEERS / "kaiju_tools_app", stdout=out, stderr=out,
        )
    try:
        http = HTTPClient(base_url=f"http://127.0.0.1:{port}")
        client = HTTPRPCClient()
        async with started(http, client):

            async def answers() -> bool:
                assert proc.poll() is None, f"the kaiju-tools app exited ({proc.returncode}): {log.read_text()[-2000:]}"
                try:
                    return await client.call("echo.echo", {"data": 0}) == 0
                except OSError:
                    return False

            await eventually(answers, timeout=START_WAIT, interval=0.1, what=f"the kaiju-tools app on port {port} ({log})")
            assert await client.call("echo.echo", {"data": {"a": [1, 2]}}) == {"a": [1, 2]}
            assert await client.call_multiple(("echo.echo", {"data": 1}), ("echo.echo", {"data": 2})) == [1, 2]
            with pytest.raises(rpc.MethodNotFound):
                await client.call("echo.nope")
            with pytest.raises(rpc.InvalidParams):
                await client.call("echo.echo", {"dat": 1})
    finally:
        proc.terminate()
        proc.wait(10)
