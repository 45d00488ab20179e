"""Real redis-servers on free loopback ports, for tests: one server, a Sentinel set-up, a Cluster.

    server = RedisServer()       # appendonly on, so a restart keeps the data
    server.start(); server.url   # 'redis://127.0.0.1:PORT/0'
    server.restart()             # same port, same data dir
    server.stop()

    sentinel = RedisSentinelSet()    # a master, a replica and three sentinels
    sentinel.start(); sentinel.settings   # {'sentinels': [...], 'master_name': 'kaiju'}
    cluster = RedisClusterSet()      # three masters (replicas=1: one replica each)
    cluster.start(); cluster.settings     # {'cluster_nodes': [...]}

Each is what `RedisConnection` settings need; `flush()` empties it between tests and
`cleanup()` stops every process and removes its files. The processes are Debian's
`redis-server` (`--sentinel` for the sentinels) and `redis-cli --cluster create`.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["RedisClusterSet", "RedisSentinelSet", "RedisServer", "command", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = random.randint(20000, 55000)
        if _bindable(port) and _bindable(port + 10000):
            return port


def command(port: int, *args: str | int, timeout: float = 2.0) -> Any:
    """Send one command to the server on `port` (RESP); returns the reply (str, int, list or an
    Exception for an error reply). For fixtures: no client library needed."""
    parts = [str(a).encode() for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        return _read_reply(reader)


def _read_reply(reader: Any) -> Any:
    line = reader.readline()
    if not line:
        raise ConnectionError("the server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(reader) for _ in range(size)]
    raise ValueError(f"unexpected reply {line!r}")


def _wait(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout}s")
        time.sleep(0.05)


def _answers(port: int, *args: str | int) -> Any:
    try:
        return command(port, *args, timeout=0.5)
    except OSError:
        return None


class RedisServer:
    """One redis-server process owned by a test fixture (`extra`: more redis-server arguments)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        persistent: bool = True,
        binary: str | None = None,
        extra: list[str] | None = None,
    ):
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = port or free_port()
        self.persistent = persistent
        self.extra = list(extra or ())
        self.dir = Path(tempfile.mkdtemp(prefix="kaiju-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        if not Path(self.binary).exists():
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        args += self.extra
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text() if (self.dir / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log[-500:]}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no last write to disk (a crash)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinelSet:
    """A master, `replicas` replicas and `sentinels` sentinels monitoring it as `master_name`.

    The sentinels declare the master down after `down_after_ms` without an answer, so a
    failover after `master.kill()` takes a few seconds.
    """

    def __init__(self, *, replicas: int = 1, sentinels: int = 3, master_name: str = "kaiju", down_after_ms: int = 1000):
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.master = RedisServer(persistent=False)
        self.replicas = [RedisServer(persistent=False) for _ in range(replicas)]
        self.sentinels = [RedisServer(persistent=False) for _ in range(sentinels)]
        self.quorum = len(self.sentinels) // 2 + 1

    @property
    def settings(self) -> dict[str, Any]:
        """`RedisConnection` settings for this set-up."""
        return {"sentinels": [f"127.0.0.1:{s.port}" for s in self.sentinels], "master_name": self.master_name}

    def start(self, timeout: float = 20.0) -> None:
        self.master.start(timeout)
        for replica in self.replicas:
            replica.extra = ["--replicaof", "127.0.0.1", str(self.master.port)]
            replica.start(timeout)
        for sentinel in self.sentinels:
            conf = sentinel.dir / "sentinel.conf"
            conf.write_text(
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} {self.down_after_ms * 2}\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
            )
            _start_sentinel(sentinel, conf, timeout)
        self.wait_ready(timeout)

    def master_port(self) -> int | None:
        """The master's port as the first answering sentinel tells it."""
        for sentinel in self.sentinels:
            reply = _answers(sentinel.port, "SENTINEL", "get-master-addr-by-name", self.master_name)
            if isinstance(reply, list):
                return int(reply[1])
        return None

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the master's replicas are in sync and every sentinel knows the others
        and the replicas (what a failover needs)."""
        port = self.master_port()

        def ready() -> bool:
            info = _answers(port, "INFO", "replication") if port else None
            if not isinstance(info, str) or f"connected_slaves:{len(self.replicas)}" not in info:
                return False
            for sentinel in self.sentinels:
                master = _answers(sentinel.port, "SENTINEL", "master", self.master_name)
                if not isinstance(master, list):
                    return False
                fields = dict(zip(master[::2], master[1::2], strict=True))
                if int(fields.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                    return False
                if int(fields.get("num-slaves", 0)) < len(self.replicas):
                    return False
            return True

        _wait(ready, "the sentinels did not see the whole set-up", timeout)

    def flush(self) -> None:
        port = self.master_port()
        if port is not None:
            command(port, "FLUSHALL")
            command(port, "SCRIPT", "FLUSH")

    def server(self, port: int) -> RedisServer:
        """The master or replica listening on `port`."""
        return next(s for s in [self.master, *self.replicas] if s.port == port)

    def cleanup(self) -> None:
        for server in [*self.sentinels, *self.replicas, self.master]:
            server.cleanup()


def _start_sentinel(sentinel: RedisServer, conf: Path, timeout: float) -> None:
    args = [
        sentinel.binary,
        str(conf),
        "--sentinel",
        "--port",
        str(sentinel.port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(sentinel.dir),
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        "--logfile",
        str(sentinel.dir / "sentinel.log"),
    ]
    sentinel.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(sentinel.ping, f"sentinel on port {sentinel.port} did not answer", timeout)


class RedisClusterSet:
    """A Redis Cluster of `masters` masters with `replicas` replicas each, on free ports.

    `node_timeout_ms` is the cluster's node timeout: a killed master's replica takes over
    a little after it.
    """

    def __init__(self, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000):
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []

    @property
    def settings(self) -> dict[str, Any]:
        """`RedisConnection` settings for this cluster."""
        return {"cluster_nodes": [f"127.0.0.1:{n.port}" for n in self.nodes[: self.masters]]}

    def start(self, timeout: float = 30.0) -> None:
        for _ in range(self.masters * (1 + self.replicas)):
            node = RedisServer(free_cluster_port(), persistent=False)
            node.extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node.dir / "nodes.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
            ]
            self.nodes.append(node)
            node.start(timeout)
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        create = [cli, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes]]
        create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        done = subprocess.run(create, check=False, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        self.wait_ready(timeout)

    def master_ports(self) -> list[int]:
        """The ports of the nodes that are masters now."""
        ports = []
        for node in self.nodes:
            info = _answers(node.port, "ROLE")
            if isinstance(info, list) and info[0] == "master":
                ports.append(node.port)
        return ports

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every live node says the cluster is ok and sees every node's role."""

        def ready() -> bool:
            for node in self.nodes:
                if node.process is None:
                    continue
                info = _answers(node.port, "CLUSTER", "INFO")
                if not isinstance(info, str) or "cluster_state:ok" not in info:
                    return False
            return len(self.master_ports()) >= self.masters

        _wait(ready, "the cluster did not settle", timeout)

    def flush(self) -> None:
        for port in self.master_ports():
            command(port, "FLUSHALL")
            command(port, "SCRIPT", "FLUSH")

    def node(self, port: int) -> RedisServer:
        """The node listening on `port`."""
        return next(n for n in self.nodes if n.port == port)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
