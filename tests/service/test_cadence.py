"""When schedules fall due: every N minutes, or by a crontab expression in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mlops.cadence import Cron, Every, InvalidCron, InvalidTimezone, cron_trigger, weekday_names

FRIDAY_NOON = datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC)


def test_a_period_numbers_its_runs_from_the_creation() -> None:
    every = Every(FRIDAY_NOON, 600)

    assert every.due(FRIDAY_NOON + timedelta(seconds=599)) == 0
    assert every.due(FRIDAY_NOON + timedelta(seconds=1800)) == 3
    assert every.next_run_time(FRIDAY_NOON) == FRIDAY_NOON + timedelta(seconds=600)
    assert every.missed(1, 5) == 3


def test_a_cron_run_is_numbered_by_its_fire_time() -> None:
    nightly = Cron("0 2 * * *", "UTC", FRIDAY_NOON)
    saturday_2am = datetime(2026, 12, 5, 2, tzinfo=UTC)

    assert nightly.due(FRIDAY_NOON + timedelta(hours=1)) == 0  # none since its creation
    assert nightly.next_run_time(FRIDAY_NOON) == saturday_2am
    assert nightly.due(saturday_2am) == int(saturday_2am.timestamp())
    assert nightly.due(saturday_2am + timedelta(hours=23)) == int(saturday_2am.timestamp())
    assert nightly.span(int(saturday_2am.timestamp())) == 86_400


def test_a_cron_in_a_time_zone_follows_its_clock_across_a_daylight_saving_change() -> None:
    nightly = Cron("30 2 * * *", "Europe/Paris", datetime(2026, 10, 20, tzinfo=UTC))

    summer = nightly.next_run_time(datetime(2026, 10, 23, 12, tzinfo=UTC))
    winter = nightly.next_run_time(datetime(2026, 10, 25, 12, tzinfo=UTC))

    assert summer == datetime(2026, 10, 24, 0, 30, tzinfo=UTC)  # 02:30 in summer time
    assert winter == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 in winter time
    assert winter is not None
    assert nightly.span(int(winter.timestamp())) == 25 * 3600  # the night the clock went back


def test_a_time_in_the_hour_repeated_when_clocks_go_back_runs_once() -> None:
    nightly = Cron("30 2 * * *", "Europe/Paris", datetime(2026, 10, 20, tzinfo=UTC))
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 summer time
    again = datetime(2026, 10, 25, 1, 45, tzinfo=UTC)  # after 02:30 winter time

    assert nightly.due(first) == nightly.due(again) == int(first.timestamp())
    assert nightly.next_run_time(first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    assert nightly.missed(int(first.timestamp()) - 86_400, nightly.due(again)) == 0


def test_runs_missed_while_no_api_was_up_are_counted_and_the_latest_is_due() -> None:
    created = datetime(2026, 12, 4, 11, 54, 10, tzinfo=UTC)
    every_minute = Cron("* * * * *", "UTC", created)
    first = int(datetime(2026, 12, 4, 11, 55, tzinfo=UTC).timestamp())

    due = every_minute.due(FRIDAY_NOON)

    assert due == int(datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp())
    assert every_minute.missed(first, due) == 4  # 11:56 to 11:59


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("mon-fri", "mon-fri"),
        ("*", "*"),
    ],
)
def test_weekdays_are_read_as_crontab_reads_them(field: str, names: str) -> None:
    assert weekday_names(field) == names


def test_a_weekday_cron_fires_on_the_crontab_days() -> None:
    weekdays = Cron("0 9 * * 1-5", "UTC", FRIDAY_NOON)  # APScheduler alone: Tuesday-Saturday
    sundays = Cron("0 9 * * 0", "UTC", FRIDAY_NOON)

    assert weekdays.next_run_time(FRIDAY_NOON) == datetime(2026, 12, 7, 9, tzinfo=UTC)  # Monday
    assert sundays.next_run_time(FRIDAY_NOON) == datetime(2026, 12, 6, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 2 * *", "5 fields"),
        ("61 * * * *", "maximum value (59)"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 * * 8", "not 0-7 or sun-sat"),
        ("0 0 * * 5-1", "runs backwards"),
        ("0 0 * * 1/0", "step"),
    ],
)
def test_a_cron_expression_that_cannot_run_says_why(expression: str, words: str) -> None:
    with pytest.raises(InvalidCron, match=words.replace("(", r"\(").replace(")", r"\)")):
        cron_trigger(expression, "UTC")


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidTimezone, match="IANA"):
        cron_trigger("0 2 * * *", "Mars/Olympus")
