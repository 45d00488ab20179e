"""Next-fire arithmetic, without an event loop."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from kaiju.runtime.service import SettingError
from kaiju.tasks.schedule import CronSchedule, next_periodic_fire, parse_timezone, with_jitter

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def fires(spec: str, tz: str, start: datetime, n: int) -> list[datetime]:
    """The next `n` fires after `start`, as aware datetimes in `tz`."""
    schedule = CronSchedule(spec, tz)
    zone = ZoneInfo(tz)
    ts = start.timestamp()
    out = []
    for _ in range(n):
        ts = schedule.next_fire(ts)
        out.append(datetime.fromtimestamp(ts, zone))
    return out


def local(dts: list[datetime]) -> list[str]:
    return [d.strftime("%m-%d %H:%M:%S%z") for d in dts]


# -- periodic ---------------------------------------------------------------


def test_periodic_first_fire_is_the_anchor():
    assert next_periodic_fire(100.0, 10, 50.0) == 100.0


def test_periodic_fires_on_the_grid_strictly_after():
    assert next_periodic_fire(100.0, 10, 100.0) == 110.0
    assert next_periodic_fire(100.0, 10, 105.5) == 110.0
    assert next_periodic_fire(100.0, 10, 110.0) == 120.0


def test_periodic_fractional_interval_never_returns_the_same_time():
    ts = 1_700_000_000.0
    seen = []
    for _ in range(50):
        ts = next_periodic_fire(1_700_000_000.0, 0.1, ts)
        seen.append(ts)
    assert all(b > a for a, b in zip(seen, seen[1:]))
    assert seen[-1] == pytest.approx(1_700_000_005.0)


@pytest.mark.parametrize("interval", [0, -1])
def test_periodic_rejects_non_positive_interval(interval):
    with pytest.raises(SettingError, match="interval"):
        next_periodic_fire(0.0, interval, 1.0)


def test_jitter_stays_in_bounds():
    values = [with_jitter(10.0, 0.5) for _ in range(200)]
    assert all(10.0 <= v <= 10.5 for v in values)
    assert len(set(values)) > 1
    assert with_jitter(10.0, 0) == 10.0


# -- cron in UTC ------------------------------------------------------------


def test_cron_five_fields_utc():
    start = datetime(2024, 1, 1, 12, 7, 30, tzinfo=UTC)
    assert local(fires("*/15 * * * *", "UTC", start, 3)) == [
        "01-01 12:15:00+0000",
        "01-01 12:30:00+0000",
        "01-01 12:45:00+0000",
    ]


def test_cron_sixth_field_is_seconds():
    start = datetime(2024, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    assert local(fires("* * * * * *", "UTC", start, 3)) == [
        "01-01 12:00:01+0000",
        "01-01 12:00:02+0000",
        "01-01 12:00:03+0000",
    ]
    assert local(fires("0 * * * * 30", "UTC", start, 2)) == ["01-01 12:00:30+0000", "01-01 13:00:30+0000"]


def test_cron_next_fire_is_strictly_after_a_fire_time():
    schedule = CronSchedule("* * * * * *")
    ts = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert schedule.next_fire(ts) == ts + 1


# -- time zones -------------------------------------------------------------


def test_cron_reads_the_wall_clock_of_its_zone():
    # 09:00 in Kathmandu (UTC+05:45) is 03:15 UTC
    start = datetime(2024, 6, 1, tzinfo=UTC)
    (fire,) = fires("0 9 * * *", "Asia/Kathmandu", start, 1)
    assert fire.astimezone(UTC).strftime("%H:%M") == "03:15"


def test_cron_berlin_follows_summer_time():
    winter = fires("0 9 * * *", "Europe/Berlin", datetime(2024, 1, 10, tzinfo=UTC), 1)[0]
    summer = fires("0 9 * * *", "Europe/Berlin", datetime(2024, 7, 10, tzinfo=UTC), 1)[0]
    assert winter.astimezone(UTC).hour == 8
    assert summer.astimezone(UTC).hour == 7


def test_spring_forward_skipped_time_fires_once_at_the_jump():
    # 2024-03-31 02:00 CET -> 03:00 CEST; 02:30 does not exist that day
    start = datetime(2024, 3, 30, 12, tzinfo=BERLIN)
    assert local(fires("30 2 * * *", "Europe/Berlin", start, 3)) == [
        "03-31 03:00:00+0200",
        "04-01 02:30:00+0200",
        "04-02 02:30:00+0200",
    ]


def test_spring_forward_every_hour_spec_has_no_duplicate():
    start = datetime(2024, 3, 31, 0, 30, tzinfo=BERLIN)
    assert local(fires("0 * * * *", "Europe/Berlin", start, 3)) == [
        "03-31 01:00:00+0100",
        "03-31 03:00:00+0200",
        "03-31 04:00:00+0200",
    ]


def test_spring_forward_every_second_goes_on_in_real_time():
    start = datetime(2024, 3, 31, 1, 59, 58, tzinfo=BERLIN)
    got = fires("* * * * * *", "Europe/Berlin", start, 3)
    assert local(got) == ["03-31 01:59:59+0100", "03-31 03:00:00+0200", "03-31 03:00:01+0200"]
    stamps = [d.timestamp() for d in got]
    assert [b - a for a, b in zip(stamps, stamps[1:])] == [1.0, 1.0]


def test_fall_back_fixed_time_fires_once():
    # 2024-10-27 03:00 CEST -> 02:00 CET; 02:30 happens twice that night
    start = datetime(2024, 10, 26, 12, tzinfo=BERLIN)
    assert local(fires("30 2 * * *", "Europe/Berlin", start, 3)) == [
        "10-27 02:30:00+0200",
        "10-28 02:30:00+0100",
        "10-29 02:30:00+0100",
    ]


def test_fall_back_every_hour_spec_fires_through_the_repeated_hour():
    start = datetime(2024, 10, 27, 1, 30, tzinfo=BERLIN)
    assert local(fires("*/20 * * * *", "Europe/Berlin", start, 8)) == [
        "10-27 01:40:00+0200",
        "10-27 02:00:00+0200",
        "10-27 02:20:00+0200",
        "10-27 02:40:00+0200",
        "10-27 02:00:00+0100",
        "10-27 02:20:00+0100",
        "10-27 02:40:00+0100",
        "10-27 03:00:00+0100",
    ]


def test_fall_back_from_inside_the_second_pass():
    start = datetime(2024, 10, 27, 2, 10, fold=1, tzinfo=BERLIN)
    assert start.utcoffset().total_seconds() == 3600
    assert local(fires("*/20 * * * *", "Europe/Berlin", start, 2)) == ["10-27 02:20:00+0100", "10-27 02:40:00+0100"]
    # a fixed-time spec does not fire again in the second pass
    assert local(fires("40 2 * * *", "Europe/Berlin", start, 1)) == ["10-28 02:40:00+0100"]


def test_fall_back_every_second_is_one_second_apart():
    start = datetime(2024, 10, 27, 2, 59, 58, tzinfo=BERLIN)
    stamps = [d.timestamp() for d in fires("* * * * * *", "Europe/Berlin", start, 4)]
    assert [b - a for a, b in zip(stamps, stamps[1:])] == [1.0, 1.0, 1.0]


# -- bad input --------------------------------------------------------------


@pytest.mark.parametrize("spec", ["", "* * * *", "* * * * * * *", "61 * * * *", "a b c d e", None])
def test_bad_cron_spec(spec):
    with pytest.raises(SettingError, match="cron"):
        CronSchedule(spec)


def test_unknown_timezone():
    with pytest.raises(SettingError, match='unknown IANA time zone "Mars/Olympus"'):
        CronSchedule("* * * * *", "Mars/Olympus")
    with pytest.raises(SettingError, match="timezone"):
        parse_timezone("")
