"""A user's own modules through `kaiju-run`: errors in them are one line, and any aiomisc
service in them runs (a real TCP echo server answering a real client)."""

from __future__ import annotations

import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.runtime.test_cli import kaiju, run

TCPECHO = '''
"""An aiomisc TCP echo server, and a kaiju service that needs it."""
from pathlib import Path

from aiomisc.service import TCPServer

import kaiju


class EchoTCP(TCPServer):
    async def handle_client(self, reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()


class EchoPort(kaiju.Service):
    """Writes where the echo server listens, once it has (it starts after it, by type)."""

    echo: EchoTCP
    out: str

    async def start(self):
        Path(self.out).write_text(str(self.echo.socket.getsockname()[1]))
'''


def user_module(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def user_run(tmp_path: Path, config: str, *args: str):
    path = tmp_path / "app.yml"
    path.write_text(f"main:\n  name: t\n  shutdown_timeout: 10\n{config}")
    return path, run("-c", str(path), *args, env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[2]}"})


def assert_one_line(tmp_path: Path, config: str, line: str) -> None:
    for command in ("check", "run"):
        path, proc = user_run(tmp_path, config, command)
        assert proc.returncode == 2, (command, proc.stderr)
        assert proc.stderr.strip().splitlines() == [f"kaiju-run: {path}: {line}"], (command, proc.stderr)


def test_a_syntax_error_in_a_package(tmp_path):
    module = user_module(tmp_path, "broken_pkg", "import os\ndef f(:\n    pass\n")
    assert_one_line(
        tmp_path, "packages: [broken_pkg]\nservices: []\n",
        f'packages[0]: cannot import package "broken_pkg": SyntaxError: invalid syntax ({module}, line 2)',
    )


def test_kaiju_tools_in_packages_is_told_to_go_without_being_imported(tmp_path):
    user_module(tmp_path, "kaiju_tools", "raise RuntimeError('imported')\n")  # importing it would say so
    assert_one_line(
        tmp_path, "packages: [kaiju_tools]\nservices: []\n",
        'packages[0]: "kaiju_tools" is kaiju-tools: kaiju finds its own classes without a packages entry, '
        "so remove it (docs/migration.rst)",
    )


def test_an_import_error_in_a_module_named_by_cls(tmp_path):
    module = user_module(tmp_path, "needs_more", "import os\n\nimport no_such_dependency_xyz\n")
    assert_one_line(
        tmp_path, 'services:\n  - cls: "needs_more:Thing"\n',
        'services[needs_more:Thing].cls: cannot import module "needs_more": '
        f"ModuleNotFoundError: No module named 'no_such_dependency_xyz' ({module}, line 3)",
    )


def test_an_exception_in_init(tmp_path):
    module = user_module(tmp_path, "raising", '''
        import kaiju


        class Boom(kaiju.Service):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                raise RuntimeError("no licence key")
    ''')
    assert_one_line(
        tmp_path, 'services:\n  - cls: "raising:Boom"\n    name: boom\n',
        f"services[boom]: raising:Boom failed to construct: RuntimeError: no licence key ({module}, line 8)",
    )


def test_an_aiomisc_service_is_checked_like_any_other(tmp_path):
    user_module(tmp_path, "tcpecho", TCPECHO)
    assert_one_line(
        tmp_path, 'packages: [tcpecho]\nservices:\n  - cls: EchoTCP\n    settings: {address: 127.0.0.1, colour: red}\n',
        "services[EchoTCP].settings.colour: unknown key",
    )
    path, proc = user_run(tmp_path, "packages: [tcpecho]\nservices:\n  - cls: tcpecho:EchoTCP\n    name: echo\n"
                          "    settings: {address: 127.0.0.1, port: 0}\n  - cls: EchoPort\n    settings: {out: x}\n", "check")
    assert proc.returncode == 0, proc.stderr
    assert "echo [tcpecho:EchoTCP]" in proc.stdout and "EchoPort [tcpecho:EchoPort] <- echo" in proc.stdout


def test_an_aiomisc_tcp_server_runs_and_answers(tmp_path):
    user_module(tmp_path, "tcpecho", TCPECHO)
    out = tmp_path / "port"
    config = tmp_path / "app.yml"
    config.write_text(
        "main:\n  name: t\n  shutdown_timeout: 10\npackages: [tcpecho]\nservices:\n"
        "  - cls: EchoTCP\n    settings: {address: 127.0.0.1, port: 0}\n"
        f"  - cls: EchoPort\n    settings: {{out: {out}}}\n"
    )
    proc = kaiju("-c", str(config), "run", env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[2]}"})
    try:
        deadline = time.monotonic() + 15
        while not (out.exists() and out.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the echo server did not start: {proc.communicate()[1]}")
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", int(out.read_text())), timeout=10) as client:
            client.sendall(b"hello kaiju\n")
            assert client.makefile("rb").readline() == b"hello kaiju\n"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_an_error_kaiju_raises_for_the_user_module_names_the_user_line(tmp_path):
    from kaiju.runtime.registry import ClassNotFound, import_module

    module = tmp_path / "scoped_app.py"
    module.write_text("import kaiju\nfrom kaiju import rpc\n\n\nclass S(kaiju.Service):\n    @rpc.method(permission='superuser')\n    async def x(self):\n        pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ClassNotFound) as info:
            import_module("scoped_app")
        assert f"({module}, line 6)" in str(info.value) and "unknown scope 'superuser'" in str(info.value)
        with pytest.raises(ClassNotFound) as info:
            import_module("scoped_app_that_is_not_there")
        assert str(info.value).endswith("No module named 'scoped_app_that_is_not_there'")  # no importlib file
    finally:
        sys.path.remove(str(tmp_path))
