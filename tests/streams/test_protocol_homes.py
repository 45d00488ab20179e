"""Each piece of protocol has one home: no error code, header name, key prefix or Lua script
is spelled out in the stream, cache or locks code, and the homes depend on nothing above them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kaiju import keys, lua
from kaiju.auth.sessions import CacheSessions

KAIJU = Path(keys.__file__).resolve().parent
USERS = sorted([*KAIJU.glob("streams/*.py"), *KAIJU.glob("cache/*.py"), *KAIJU.glob("locks/*.py")])


def code_strings(path: Path) -> list[str]:
    """The string constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def code_numbers(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [
        -node.operand.value for node in ast.walk(tree)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int)
    ]


@pytest.mark.parametrize("path", USERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_protocol_literal_outside_its_home(path: Path) -> None:
    strings = code_strings(path)
    # (TOPIC_LOCK, "stream", is also an ordinary word: a status field is named so)
    prefixes = {getattr(keys, name) for name in dir(keys) if name.isupper() and name != "TOPIC_LOCK"}
    assert not prefixes & set(strings), "a key prefix spelled out: use kaiju.keys"
    headers = {"Correlation-Id", "Deadline", "Timeout", "Session-Id", "Authorization", "RPC-Retries"}
    if path.name != "dispatch.py":  # the home of Message-Id, the one header only streams use
        headers.add("Message-Id")
    headers |= {h.lower() for h in headers if "-" in h}  # "deadline" alone is also a plain word
    assert not headers & set(strings), "a header name spelled out: use kaiju.rpc.protocol"
    assert not [s for s in strings if re.search(r"redis\.call\(", s)], "a Lua script outside kaiju.lua"
    assert not [n for n in code_numbers(path) if -32768 <= n <= -32000], "a JSON-RPC error code spelled out"


def test_the_homes_import_nothing_of_kaiju() -> None:
    for module in (keys, lua):
        tree = ast.parse(Path(module.__file__).read_text())
        imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert imports == [], module.__name__


def test_the_stream_storage_depends_on_no_rpc_nor_locks() -> None:
    # a lower floor never imports a higher one: storage knows nothing of dispatching or pausing
    for name in ("base.py", "memory.py", "redis.py"):
        tree = ast.parse((KAIJU / "streams" / name).read_text())
        modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {m for m in modules if m and m.startswith(("kaiju.rpc", "kaiju.locks", "kaiju.streams.service"))}


def test_the_session_prefix_is_the_one_cache_sessions_use() -> None:
    assert CacheSessions.key_prefix == keys.SESSION


def test_every_script_is_lua_for_redis() -> None:
    scripts = {name: getattr(lua, name) for name in dir(lua) if name.isupper()}
    assert len(scripts) == 11
    assert all("redis.call(" in text for text in scripts.values())
