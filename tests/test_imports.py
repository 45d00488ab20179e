"""The package front doors: every exported name resolves, and importing a package loads nothing else.

Import checks run in a fresh interpreter each (this one has long since imported everything).
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PACKAGES = [
    "kaiju", "kaiju.rpc", "kaiju.http", "kaiju.cache", "kaiju.locks", "kaiju.streams", "kaiju.tasks",
    "kaiju.runtime", "kaiju.config", "kaiju.testing", "kaiju.telemetry",
]


def loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running `code`."""
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def third_party_clients(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in ("redis", "aiohttp")]


def type_checking_imports(package: str) -> dict[str, str]:
    """`{name: module}` of the `if TYPE_CHECKING:` block of a package's __init__.py."""
    tree = ast.parse(Path(importlib.import_module(package).__file__).read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    found.update({alias.name: stmt.module for alias in stmt.names})
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves_to_what_the_type_checker_sees(package: str) -> None:
    module = importlib.import_module(package)
    exports = module._EXPORTS
    assert set(module.__all__) - {"__version__"} == set(exports)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    seen = type_checking_imports(package)
    for name, source in exports.items():
        if source == f"{package}.{name}":  # a submodule, imported as `from <package> import <name>`
            continue
        assert seen.get(name) == source, f"{package}.{name}: TYPE_CHECKING imports it from {seen.get(name)}"
        assert getattr(importlib.import_module(source), name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    import kaiju.streams

    with pytest.raises(AttributeError, match="kaiju.streams.*NoSuchThing"):
        kaiju.streams.NoSuchThing  # noqa: B018


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_loads_only_its_front_door(package: str) -> None:
    modules = loaded_after(f"import {package}")
    assert third_party_clients(modules) == []
    expected = {"kaiju", package}
    assert {m for m in modules if m.split(".")[0] == "kaiju"} == expected


def test_import_kaiju_loads_one_kaiju_module() -> None:
    modules = loaded_after("import kaiju")
    assert [m for m in modules if m.split(".")[0] == "kaiju"] == ["kaiju"]


def test_naming_the_redis_backends_loads_no_redis_client() -> None:
    modules = loaded_after(
        "from kaiju.streams import StreamProducer, StreamListener, RedisStream, MemoryStream, Streams\n"
        "from kaiju.cache import RedisCache, MemoryCache, Cache\n"
        "from kaiju.locks import RedisLocks, MemoryLocks, Locks\n"
        "from kaiju.redis import RedisConnection"
    )
    assert "kaiju.streams.redis" in modules and "kaiju.cache.redis" in modules  # really imported
    assert [m for m in modules if m.split(".")[0] == "redis"] == []


def test_starting_a_redis_connection_is_what_loads_the_client() -> None:
    # the other side of the lazy import: the client is there once a connection starts (the
    # URL points at a closed port, so start fails, after importing redis-py)
    modules = loaded_after(
        "import asyncio\n"
        "from kaiju.redis import RedisConnection, RedisUnavailable\n"
        "from kaiju.testing import free_port\n"
        "conn = RedisConnection(url=f'redis://127.0.0.1:{free_port()}/0', connect_timeout=0.5, retries=0)\n"
        "try:\n"
        "    asyncio.run(conn.start())\n"
        "except RedisUnavailable:\n"
        "    pass"
    )
    assert "redis.asyncio" in modules
