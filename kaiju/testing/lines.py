"""`OutputLines`: read a child process's output with deadlines.

    app = subprocess.Popen([...], stderr=subprocess.PIPE, text=True)
    lines = OutputLines(app.stderr)
    lines.until(lambda line: "listening" in line, timeout=20)

A bare `readline()` blocks a test forever when the child hangs or goes quiet; here a thread
reads, and waiting fails with an `AssertionError` that shows what was read.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import IO

__all__ = ["OutputLines"]


class OutputLines:
    """The lines of a text stream (a child's stdout or stderr), read by a daemon thread.

    Make it right after starting the child and read everything through it: a second reader
    of the same stream would take lines from under it.
    """

    def __init__(self, stream: IO[str]):
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def until(self, done: Callable[[str], bool] | None, timeout: float = 30.0) -> list[str]:
        """The lines read up to and including the first for which `done(line)` holds; with
        `done=None`, all lines up to the end of the output.

        Raises AssertionError (listing the lines read) when `timeout` seconds pass first, or
        when the output ends before a matching line.
        """
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no expected line after {timeout}s; read: {seen}") from None
            if line is None:
                if done is None:
                    return seen
                raise AssertionError(f"the output ended before the expected line; read: {seen}")
            seen.append(line)
            if done is not None and done(line):
                return seen
