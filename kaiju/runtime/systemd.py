"""systemd's notify protocol: READY=1, STOPPING=1 and watchdog pings over `NOTIFY_SOCKET`.

Without `NOTIFY_SOCKET` every call is a no-op, so the entrypoint can always use it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends state lines to systemd; pings the watchdog at half of `WATCHDOG_USEC`."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        self.watchdog_interval: float | None = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1_000_000
        self._socket: socket.socket | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, state: str) -> bool:
        """Send one state line (`READY=1`, `STOPPING=1`, `STATUS=...`); False when not sent."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(state.encode(), self.address)
        except OSError as exc:
            log.warning("systemd notify socket %s: %s", self.address, exc)
            return False
        return True

    def ready(self) -> None:
        self.notify("READY=1")

    def stopping(self) -> None:
        self.stop_watchdog()
        self.notify("STOPPING=1")

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ping the watchdog every half interval until `stop_watchdog()`."""
        if self.watchdog_interval is None or self.address is None or self._watchdog is not None:
            return
        period = self.watchdog_interval / 2

        def ping() -> None:
            self.notify("WATCHDOG=1")
            self._watchdog = loop.call_later(period, ping)

        ping()

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def close(self) -> None:
        self.stop_watchdog()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
