"""Fixtures of the task tests."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import time_machine


@pytest.fixture
def quiet_clock():
    """The wall clock set to 2030-06-01 12:30 UTC, ticking on from there, for one test: hourly,
    nightly and yearly schedules are then far from a fire, wherever the real clock stands."""
    with time_machine.travel(datetime(2030, 6, 1, 12, 30, tzinfo=timezone.utc), tick=True):
        yield
