"""The shared Redis connection: one `redis.asyncio` client per app, in one of three modes.

    services:
      - cls: RedisConnection
        settings:
          url: "[REDIS_URL:redis://127.0.0.1:6379/0]"      # standalone
          # sentinels: ["10.0.0.1:26379", "10.0.0.2:26379"]  # or Sentinel, with
          # master_name: mymaster
          # cluster_nodes: ["10.0.0.1:6379"]                 # or Cluster

Cache, locks and streams on Redis depend on it through the service graph
(`redis: RedisConnection`) and use its `client`, or its `batch` (`AutoPipeline`) for
commands that may travel together with other callers' commands.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from kaiju.autopipeline import AutoPipeline
from kaiju.runtime.service import Service, SettingError
from kaiju.runtime.types import NonNegativeInt, Positive, PositiveInt, RedisURL
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

__all__ = ["RedisConnection", "RedisUnavailable", "mask_url", "parse_node"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
REDIS_EXTRA = 'pip install "kaiju-runner[redis]"'


class RedisUnavailable(ConnectionError):
    """Redis did not answer at start-up; the message names the URL with its password masked."""


def _check_url(url: str) -> None:
    """redis-py reads `url` as it will at start: its scheme, and a query of options it knows
    with values it accepts (an unknown one goes to the connection, failing only when it is made)."""
    import redis.asyncio as aioredis

    try:
        # builds the pool and one connection object; nothing connects
        aioredis.ConnectionPool.from_url(url).make_connection()
    except ValueError as exc:  # a value redis-py cannot read ("Invalid value for 'socket_timeout' ...")
        why = str(exc)
    except TypeError as exc:  # an option it does not know ("... unexpected keyword argument 'dbb'")
        name = re.search(r"'([^']*)'$", str(exc))
        why = f"redis-py knows no option {name.group(1) if name else exc}"
    else:
        return
    raise SettingError("url", f"expected a Redis URL redis-py can read, got {RedisURL.show(url)}: {why}")


def mask_url(url: str) -> str:
    """`url` with the password (if any) replaced by `***`.

    >>> mask_url("redis://user:secret@db:6379/0")
    'redis://user:***@db:6379/0'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def parse_node(node: str) -> tuple[str, int]:
    """`"host:port"` (`"[::1]:port"` for IPv6) -> `(host, port)`; raises ValueError otherwise.

    >>> parse_node("10.0.0.1:26379")
    ('10.0.0.1', 26379)
    """
    host, sep, port = node.rpartition(":") if isinstance(node, str) else ("", "", "")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'expected host:port, got "{node}"')
    return host, int(port)


class RedisConnection(Service):
    """A Redis client, opened at start and closed at stop, in one of three modes:

    - standalone: `url` (the default when no mode is given: `redis://127.0.0.1:6379/0`);
    - Sentinel: `sentinels` and `master_name`; the master is looked up through the
      sentinels on every new connection, so after a failover the next command finds the
      new one;
    - Cluster: `cluster_nodes` (some nodes; the others are discovered); MOVED / ASK
      redirections and a node's failover are followed by redis-py's cluster client.

    After `start()`, `client` is a `redis.asyncio.Redis` (or `RedisCluster`) returning bytes
    (`decode_responses=False`) and `batch` an `AutoPipeline` over it. Start raises
    `RedisUnavailable` when Redis does not answer a PING within `connect_timeout` seconds.
    """

    service_name = "redis"

    url: RedisURL | None = None
    """Standalone: `redis://[user:password@]host:port/db`; `rediss://` for TLS; `unix:///path?db=0` for a socket."""
    sentinels: list[str] | None = None
    """Sentinel: the sentinels' `host:port` addresses (give them all; one answering is enough)."""
    master_name: str | None = None
    """Sentinel: the name the sentinels monitor the master under."""
    sentinel_password: str | None = None
    """Sentinel: the sentinels' own password (`requirepass` of sentinel.conf), if any."""
    cluster_nodes: list[str] | None = None
    """Cluster: `host:port` of some of the cluster's nodes, to discover the rest from."""
    db: NonNegativeInt = 0
    """Sentinel: the database number (standalone takes it from `url`; a Cluster has only 0)."""
    ssl: bool = False
    """Sentinel and Cluster: TLS to the servers (standalone: a `rediss://` url)."""
    password: str | None = None
    """The servers' password; overrides the one in `url` (keeps it out of the URL in logs and configs)."""
    max_connections: PositiveInt = 32
    """Pool size (per node on a Cluster): on one server and on Sentinel, commands beyond this many
    in flight wait `pool_timeout` for a free connection; a Cluster fails them at once."""
    pool_timeout: float | None = 10.0
    """One server and Sentinel: seconds a command waits for a free connection before raising (None: no limit)."""
    socket_timeout: float | None = 10.0
    """Seconds to wait for a reply before raising a TimeoutError (None: no limit)."""
    connect_timeout: Positive = 5.0
    """Seconds to wait for a connection to open."""
    health_check_interval: float = 0
    """Seconds a connection may stay idle before it is PINGed on reuse (0: never)."""
    retries: NonNegativeInt = 3
    """Times a command is retried, with jittered backoff, when its connection breaks (e.g. Redis restarted)."""
    failover_timeout: Positive = 30.0
    """Sentinel: seconds a failover may take. A command that meets a dead master is retried
    (jittered backoff up to 1 s) for about this long, so it succeeds on the new master unless
    its caller's deadline ends first; `/health/ready` names `redis` meanwhile. (A Cluster
    client retries `retries` times, looking the slot's master up again each time.)"""
    ssl_ca_certs: str | None = None
    """CA bundle to verify the servers with over TLS (default: the system's)."""
    ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    """Server certificate check over TLS."""
    telemetry: Telemetry | None = None
    """The `Telemetry` which, with `detail: full`, makes a span of each command (standalone mode)."""

    if TYPE_CHECKING:  # set by start(); not settings
        # a redis.asyncio.Redis (or its Sentinel / Cluster kin); typed Any: redis-py types each
        # reply `bytes | str` by a run-time flag (decode_responses), and this client always returns bytes
        client: Any
        batch: AutoPipeline

    @property
    def mode(self) -> str:
        """ "cluster", "sentinel" or "standalone", from the settings given."""
        if self.cluster_nodes:
            return "cluster"
        return "sentinel" if self.sentinels else "standalone"

    @property
    def address(self) -> str:
        """Where this connects to, for logs and errors (passwords masked)."""
        if self.cluster_nodes:
            return "cluster " + ",".join(self.cluster_nodes)
        if self.sentinels:
            return f"master {self.master_name!r} of sentinels " + ",".join(self.sentinels)
        return mask_url(self.url or DEFAULT_URL)

    def check(self) -> None:
        """One mode, given whole; redis-py installed (ValueError naming the extra to install)."""
        try:
            import redis.asyncio  # noqa: F401 -- start() needs it: a host without the extra is told here
        except ImportError as exc:
            raise ValueError(f"needs redis-py, and {exc.name or 'redis'} does not import: {REDIS_EXTRA}") from None
        modes = [name for name in ("url", "sentinels", "cluster_nodes") if getattr(self, name)]
        if len(modes) > 1:
            raise SettingError(modes[1], f"expected one of url, sentinels or cluster_nodes, got {' and '.join(modes)}")
        if self.sentinels and not self.master_name:
            raise SettingError("master_name", "expected the master's name with sentinels, got none")
        if self.master_name and not self.sentinels:
            raise SettingError("sentinels", "expected the sentinels' host:port with master_name, got none")
        for name in ("sentinels", "cluster_nodes"):
            for n, node in enumerate(getattr(self, name) or ()):
                try:
                    parse_node(node)
                except ValueError:
                    raise SettingError(name, f'expected host:port items, got "{node}" at [{n}]') from None
        if self.url:
            _check_url(self.url)

    async def start(self) -> None:
        from redis.exceptions import RedisClusterException, RedisError

        self.check()  # a service built in code (not from config) gets the same rules
        client = self._make_client()
        try:
            # bounded: on Sentinel a command retries for failover_timeout, a start should not
            async with asyncio.timeout(self.connect_timeout):
                if self.cluster_nodes:
                    await client.initialize()
                await client.ping()
        except (RedisError, RedisClusterException, OSError) as exc:  # TimeoutError is an OSError
            await client.aclose()
            why = str(exc) or f"no answer within connect_timeout ({self.connect_timeout}s)"
            raise RedisUnavailable(f"Redis at {self.address} does not answer: {why}") from None
        self.client = client
        self.batch = AutoPipeline(client, cluster=bool(self.cluster_nodes))
        self.logger.info("connected", url=self.address, mode=self.mode)

    def _make_client(self) -> Any:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        retries = self.retries
        if self.mode == "sentinel":
            # the backoff averages ~0.5 s once capped: about failover_timeout seconds in all
            retries = max(retries, int(self.failover_timeout * 2))
        options: dict[str, Any] = {
            "max_connections": self.max_connections,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "health_check_interval": self.health_check_interval,
            "decode_responses": False,
            "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
            "retry_on_error": [RedisConnectionError],
        }
        if self.password is not None:
            options["password"] = self.password
        tls = self.ssl if self.mode != "standalone" else (self.url or "").startswith("rediss://")
        if tls:
            options["ssl_cert_reqs"] = self.ssl_cert_reqs
            if self.ssl_ca_certs:
                options["ssl_ca_certs"] = self.ssl_ca_certs
        if self.cluster_nodes:
            return self._cluster_client(options, tls)
        if self.sentinels:
            return self._sentinel_client(options, tls)
        url = self.url or DEFAULT_URL
        try:
            pool = aioredis.BlockingConnectionPool.from_url(url, timeout=self.pool_timeout, **options)
        except ValueError as exc:
            raise ValueError(f"bad Redis URL {mask_url(url)!r}: {exc}") from None
        return self._client_class(aioredis.Redis, pool)(connection_pool=pool)

    def _client_class(self, base: type, pool: Any) -> type:
        """`base`, or with `detail: full` tracing a subclass of it whose commands are spans
        (standalone: the commands sent one by one; a pipeline is one round trip, not traced)."""
        tracing = tracing_of(self.telemetry)
        if tracing is None or not tracing.full:
            return base
        from kaiju.telemetry.detail import traced_redis

        return traced_redis(base, tracing, pool.connection_kwargs)

    def _sentinel_client(self, options: dict[str, Any], tls: bool) -> Any:
        from redis.asyncio.sentinel import Sentinel

        sentinel_options: dict[str, Any] = {
            "socket_timeout": self.connect_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "decode_responses": False,
        }
        if self.sentinel_password is not None:
            sentinel_options["password"] = self.sentinel_password
        if tls:
            sentinel_options.update(ssl=True, **{k: v for k, v in options.items() if k.startswith("ssl_")})
        # retry_on_error stays with the master's connections: a sentinel that does not answer is skipped
        sentinel = Sentinel([parse_node(node) for node in self.sentinels or ()], sentinel_kwargs=sentinel_options)
        return sentinel.master_for(  # check(): master_name is given
            str(self.master_name),
            connection_pool_class=_blocking_sentinel_pool(),
            timeout=self.pool_timeout,
            db=self.db,
            ssl=tls,
            **options,
        )

    def _cluster_client(self, options: dict[str, Any], tls: bool) -> Any:
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(*parse_node(node)) for node in self.cluster_nodes or ()]
        # connection retries stay at `retries`: rather than wait for a dead node, redis-py's
        # cluster client reads the slot map again and sends the command to the slot's new master
        return RedisCluster(startup_nodes=nodes, ssl=tls, **options)

    async def health(self) -> None:
        """Raise when Redis does not answer a PING (the health check of `/health/ready`); on a
        Cluster, when a master does not (its slots cannot be written until a replica takes over)."""
        client = self.__dict__.get("client")
        if client is None:
            raise RedisUnavailable("not connected")
        if self.cluster_nodes:
            await client.ping(target_nodes="primaries")
        else:
            await client.ping()

    async def publish(self, channel: str, message: bytes) -> int:
        """PUBLISH `message` on `channel`, in any mode (a Cluster forwards it to every node);
        returns how many subscribers of the node it reached."""
        return int(await self.client.execute_command("PUBLISH", channel, message))

    def pubsub(self) -> Any:
        """A redis-py `PubSub` (`subscribe`, `listen`, `aclose`) in any mode. On a Cluster it
        is a connection to one node, its default one: classic pub/sub messages reach every
        node, and after a failover a new call picks the node again."""
        if not self.cluster_nodes:
            return self.client.pubsub(ignore_subscribe_messages=True)
        import redis.asyncio as aioredis

        node = self.client.get_default_node()
        options: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": None,  # a subscriber waits for messages as long as it takes
            "decode_responses": False,
        }
        if self.password is not None:
            options["password"] = self.password
        if self.ssl:
            options.update(ssl=True, ssl_cert_reqs=self.ssl_cert_reqs)
            if self.ssl_ca_certs:
                options["ssl_ca_certs"] = self.ssl_ca_certs
        return aioredis.Redis(host=node.host, port=node.port, **options).pubsub(ignore_subscribe_messages=True)

    async def stop(self, exception: Exception | None = None) -> None:
        batch = self.__dict__.pop("batch", None)
        if batch is not None:  # what callers queued goes out before the client closes
            await batch.close(timeout=self.socket_timeout or 10.0)
        client = self.__dict__.pop("client", None)
        if client is not None:
            await client.aclose()


def _blocking_sentinel_pool() -> type:
    """The pool of a Sentinel master's connections that, like the standalone one, waits up to
    `pool_timeout` for a free connection when all `max_connections` are in use; redis-py's
    own raises MaxConnectionsError at once (a burst of callers got InternalError)."""
    from redis.asyncio.connection import BlockingConnectionPool
    from redis.asyncio.sentinel import SentinelConnectionPool

    class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
        pass

    return BlockingSentinelPool
