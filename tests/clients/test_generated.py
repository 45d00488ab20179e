"""`kaiju-run openrpc` and the clients `kaiju-run client` generates: the Python one passes
`mypy --strict`, the TypeScript one `tsc --strict`, and each calls a running app over HTTP
and over a WebSocket."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kaiju.http.client import HTTPClient, HTTPRPCClient
from kaiju.http.ws_client import WSRPCClient
from kaiju.rpc.errors import MethodNotFound
from kaiju.testing import TestApp
from kaiju.testing.services import started

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG = HERE / "app.yml"
TYPESCRIPT = "typescript@5"  # the compiler the test installs from the npm registry


def kaiju_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kaiju", "-c", str(CONFIG), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_openrpc_prints_the_document_for_a_scope():
    guest = json.loads(kaiju_run("openrpc", "--scope", "guest").stdout)
    user = json.loads(kaiju_run("openrpc").stdout)
    names = {m["name"] for m in guest["methods"]}
    assert {"shop.add", "shop.order", "rpc.subscribe"} <= names and "shop.mine" not in names
    assert "shop.mine" in {m["name"] for m in user["methods"]}
    assert guest["info"] == {"title": "shop", "version": "1.2.3"}
    assert guest["x-topics"] == [{"pattern": "shop.*", "scope": "guest"}]
    assert "Item" in guest["components"]["schemas"]
    bad = kaiju_run("openrpc", "--scope", "boss")
    assert bad.returncode == 2 and "unknown scope" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture
def python_api(tmp_path):
    out = tmp_path / "api.py"
    made = kaiju_run("client", "--lang", "python", "-o", str(out))
    assert made.returncode == 0, made.stderr
    return out


def test_the_python_client_passes_mypy_strict(python_api):
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(python_api)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _import(path: Path):
    spec = importlib.util.spec_from_file_location("generated_api", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["generated_api"] = module  # msgspec resolves the Structs' annotations there
    spec.loader.exec_module(module)
    return module


async def test_the_python_client_calls_a_running_app_over_http_and_websocket(python_api):
    api = _import(python_api)
    async with TestApp(CONFIG) as app:
        url = app.service("http").url
        http = HTTPClient(base_url=url.rsplit("/public/rpc", 1)[0])
        transports = [HTTPRPCClient(http=http), WSRPCClient(url=url.replace("http://", "ws://").replace("/rpc", "/ws"))]
        async with started(http, *transports):
            for transport in transports:
                client = api.Client(transport)
                assert await client.shop.add(a=2, b=3) == 5
                assert await client.shop.add(a=2) == 2
                receipt = await client.shop.order(items=[api.Item(name="pear", qty=2), api.Item(name="fig")])
                assert isinstance(receipt, api.Receipt) and receipt.total == 3 and receipt.items[1] == api.Item(name="fig")
                assert await client.shop.tags() == {"fruit": ["apple"]}
                assert await client.shop.forget(key="x") is None
                with pytest.raises(MethodNotFound):
                    await client.shop.mine()


@pytest.fixture(scope="session")
def tsc() -> Path:
    """The TypeScript compiler, installed from the npm registry into a cache outside the repository."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("Node.js and npm are needed for the TypeScript client's test (apt-get install nodejs npm)")
    cache = Path(os.environ.get("KAIJU_TEST_CACHE", Path.home() / ".cache" / "kaiju-tests")) / "typescript"
    binary = cache / "node_modules" / ".bin" / "tsc"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(cache), TYPESCRIPT, "--no-audit", "--no-fund", "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0 and binary.exists(), done.stdout + done.stderr
    return binary


@pytest.fixture
def typescript_api(tmp_path):
    out = tmp_path / "api.ts"
    made = kaiju_run("client", "--lang", "typescript", "-o", str(out))
    assert made.returncode == 0, made.stderr
    shutil.copy(HERE / "main.ts", tmp_path / "main.ts")
    return out


_TS_OPTIONS = ["--strict", "--target", "es2022", "--lib", "es2022,dom"]


def test_the_typescript_client_passes_tsc_strict(tsc, typescript_api):
    checked = subprocess.run(
        [str(tsc), *_TS_OPTIONS, "--noEmit", str(typescript_api)], capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_the_typescript_client_calls_a_running_app_over_http_and_websocket(tsc, typescript_api, tmp_path):
    import asyncio

    built = tmp_path / "out"
    compiled = subprocess.run(
        [str(tsc), *_TS_OPTIONS, "--module", "commonjs", "--outDir", str(built), str(tmp_path / "main.ts")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    async with TestApp(CONFIG) as app:
        url = app.service("http").url
        ws_url = url.replace("http://", "ws://").replace("/rpc", "/ws")
        node = await asyncio.create_subprocess_exec(
            "node", "--experimental-websocket", str(built / "main.js"), url, ws_url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(node.communicate(), 120)
    assert node.returncode == 0, err.decode()
    got = json.loads(out.decode().strip().splitlines()[-1])
    assert got["sum"] == 5
    assert got["receipt"]["total"] == 3 and got["receipt"]["note"] == "gift"
    assert got["refused"] == "MethodNotFound -32601"
    assert got["tags"] == {"fruit": ["apple"]}
    assert got["events"] == [{"topic": "shop.news", "data": {"n": 1}}]
