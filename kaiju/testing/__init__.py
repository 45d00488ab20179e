"""Test helpers for kaiju apps: a real redis-server fixture (see `kaiju.testing.plugin`)."""

from kaiju.testing.redis import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
