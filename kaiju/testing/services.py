"""Start a few service instances in a test without a config file.

    async with started(MemoryLocks(), PeriodicTask(...)) as app:
        ...

Dependencies are resolved among the given instances (by name when the attribute
holds a string, else by type) and the services start in the given order and stop
in reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kaiju.runtime.service import App, Service

__all__ = ["started"]


def _resolve(services: tuple[Service, ...]) -> None:
    by_name = {s.name: s for s in services}
    for svc in services:
        for dep in svc.dependencies():
            current = svc.__dict__.get(dep.attr, getattr(type(svc), dep.attr, None))
            if isinstance(current, Service):
                continue
            if isinstance(current, str):
                setattr(svc, dep.attr, by_name[current])
                continue
            found = [o for o in services if o is not svc and isinstance(o, dep.cls)]
            if len(found) == 1:
                setattr(svc, dep.attr, found[0])
            elif not found and dep.optional:
                setattr(svc, dep.attr, None)
            else:
                raise LookupError(f"{svc.name}.{dep.attr}: {len(found)} candidates of type {dep.cls.__name__}")


@asynccontextmanager
async def started(*services: Service, app: App | None = None) -> AsyncIterator[App]:
    """Bind `services` to one App, resolve their dependencies, start them in order; stop in reverse."""
    app = app or App(name="test", env="test")
    app.managed = True
    for svc in services:
        svc.bind(app)
        app.services[svc.name] = svc
    _resolve(services)
    loop = asyncio.get_running_loop()
    running: list[Service] = []
    try:
        for svc in services:
            svc.set_loop(loop)
            await svc.start()
            running.append(svc)
        app.started.set()
        yield app
    finally:
        for svc in reversed(running):
            await svc.stop()
