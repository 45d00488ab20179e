"""The suite's own pytest hooks."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Name the random test order at the end of the run, quiet (-q) or not, so a failure that
    depends on it can be run again in the same order."""
    seed = config.getoption("randomly_seed", default=None)
    if seed is not None:
        terminalreporter.write_line(f"test order: --randomly-seed={seed} (-p no:randomly for file order)")
