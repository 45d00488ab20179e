"""The shared Redis connection: one `redis.asyncio` connection pool per app.

    services:
      - cls: RedisConnection
        settings:
          url: "[REDIS_URL:redis://127.0.0.1:6379/0]"

Cache, locks and streams on Redis depend on it through the service graph
(`redis: RedisConnection`) and use its `client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from kaiju.runtime.service import Service
from kaiju.runtime.types import NonNegativeInt, Positive, PositiveInt, RedisURL
from kaiju.telemetry.provider import tracing_of
from kaiju.telemetry.service import Telemetry

__all__ = ["RedisConnection", "RedisUnavailable", "mask_url"]


class RedisUnavailable(ConnectionError):
    """Redis did not answer at start-up; the message names the URL with its password masked."""


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


class RedisConnection(Service):
    """A connection pool to one Redis server, opened at start and closed at stop.

    After `start()`, `client` is a `redis.asyncio.Redis` returning bytes
    (`decode_responses=False`). Start raises `RedisUnavailable` when the server does not
    answer a PING within `connect_timeout` seconds.
    """

    service_name = "redis"

    url: RedisURL = RedisURL("redis://127.0.0.1:6379/0")
    """`redis://[user:password@]host:port/db`; `rediss://` for TLS; `unix:///path?db=0` for a socket."""
    password: str | None = None
    """Overrides the password in `url` (keeps it out of the URL in logs and configs)."""
    max_connections: PositiveInt = 32
    """Pool size: commands beyond this many in flight wait for a free connection."""
    pool_timeout: float | None = 10.0
    """Seconds a command waits for a free connection before raising ConnectionError (None: no limit)."""
    socket_timeout: float | None = 10.0
    """Seconds to wait for a reply before raising a TimeoutError (None: no limit)."""
    connect_timeout: Positive = 5.0
    """Seconds to wait for a connection to open."""
    health_check_interval: float = 0
    """Seconds a connection may stay idle before it is PINGed on reuse (0: never)."""
    retries: NonNegativeInt = 3
    """Times a command is retried, with jittered backoff, when its connection breaks (e.g. Redis restarted)."""
    ssl_ca_certs: str | None = None
    """CA bundle to verify the server with over `rediss://` (default: the system's)."""
    ssl_cert_reqs: str = "required"
    """Server certificate check over `rediss://`: "required", "optional" or "none"."""
    telemetry: Telemetry | None = None
    """The `Telemetry` which, with `detail: full`, makes a span of each command."""

    if TYPE_CHECKING:  # set by start(); not a setting
        # a redis.asyncio.Redis; typed Any: redis-py types each reply `bytes | str` by a run-time
        # flag (decode_responses), and this client always returns bytes
        client: Any

    async def start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        options: dict[str, Any] = {
            "max_connections": self.max_connections,
            "timeout": self.pool_timeout,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "health_check_interval": self.health_check_interval,
            "decode_responses": False,
            "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), self.retries),
            "retry_on_error": [RedisConnectionError],
        }
        if self.password is not None:
            options["password"] = self.password
        if self.url.startswith("rediss://"):
            options["ssl_cert_reqs"] = self.ssl_cert_reqs
            if self.ssl_ca_certs:
                options["ssl_ca_certs"] = self.ssl_ca_certs
        try:
            pool = aioredis.BlockingConnectionPool.from_url(self.url, **options)
        except ValueError as exc:
            raise ValueError(f"bad Redis URL {mask_url(self.url)!r}: {exc}") from None
        self.client = self._client_class(aioredis.Redis, pool)(connection_pool=pool)
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            await self.__dict__.pop("client").aclose(close_connection_pool=True)
            raise RedisUnavailable(f"Redis at {mask_url(self.url)} does not answer: {exc}") from None
        self.logger.info("connected", url=mask_url(self.url))

    def _client_class(self, base: type, pool: Any) -> type:
        """`base`, or with `detail: full` tracing a subclass of it whose commands are spans."""
        tracing = tracing_of(self.telemetry)
        if tracing is None or not tracing.full:
            return base
        from kaiju.telemetry.detail import traced_redis

        return traced_redis(base, tracing, pool.connection_kwargs)

    async def health(self) -> None:
        """Raise when Redis does not answer a PING (the health check of `/health/ready`)."""
        client = self.__dict__.get("client")
        if client is None:
            raise RedisUnavailable("not connected")
        await client.ping()

    async def stop(self, exception: Exception | None = None) -> None:
        client = self.__dict__.pop("client", None)
        if client is not None:
            await client.aclose(close_connection_pool=True)
