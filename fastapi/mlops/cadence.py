"""When a schedule's runs fall due: every N minutes from its creation, or at the fire
times of a cron expression in a time zone (APScheduler's CronTrigger).

Every replica must name a run the same way, since a run is claimed in Redis by its
number, and numbers grow with time: run n of a period falls due at creation + n ×
period; a cron run is numbered by its fire time in Unix seconds. 0 means no run yet.

Cron expressions are the crontab's five fields (minute hour day month weekday), with
the weekday as crontab reads it: 0 and 7 are Sunday. APScheduler's own `from_crontab`
reads 0 as Monday, so numeric weekdays are given to it as names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# How far back the latest fire time is looked for, widening: a minute's search
# steps through one or two fire times, not every one since the schedule was made.
_WINDOWS = tuple(timedelta(days=d) for d in (1 / 1440, 1 / 24, 1, 7, 31, 366, 5 * 366))
_TICK = timedelta(microseconds=1)
# Runs missed while no API was up are counted up to this many.
MISSED_COUNTED = 10_000


class InvalidCron(ValueError):
    """A cron expression that cannot be read, or that never fires."""


class InvalidTimezone(ValueError):
    pass


class Cadence(Protocol):
    def due(self, now: datetime) -> int:
        """The number of the latest run that has fallen due by `now` (0: none yet)."""
        ...

    def next_run_time(self, now: datetime) -> datetime | None:
        """When the first run after `now` falls due (None: never again)."""
        ...

    def span(self, run: int) -> float:
        """Seconds from the run before `run` to it (at most from the creation)."""
        ...

    def missed(self, last_run: int, run: int) -> int:
        """How many runs fell due between two carried out (counted up to MISSED_COUNTED)."""
        ...


@dataclass(frozen=True)
class Every:
    """Every `seconds`, from `anchor`."""

    anchor: datetime
    seconds: float

    def due(self, now: datetime) -> int:
        return max(0, math.floor((now - self.anchor).total_seconds() / self.seconds))

    def next_run_time(self, now: datetime) -> datetime:
        return self.anchor + timedelta(seconds=(self.due(now) + 1) * self.seconds)

    def span(self, run: int) -> float:
        return self.seconds

    def missed(self, last_run: int, run: int) -> int:
        return max(0, run - last_run - 1)


@dataclass(frozen=True)
class Cron:
    """At the fire times of `expression` in `timezone`, after `anchor`."""

    expression: str
    timezone: str
    anchor: datetime
    trigger: CronTrigger = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trigger", cron_trigger(self.expression, self.timezone))

    def due(self, now: datetime) -> int:
        fire = self._latest(now, since=self.anchor)
        return 0 if fire is None else int(fire.timestamp())

    def next_run_time(self, now: datetime) -> datetime | None:
        return self._after(max(now, self.anchor))

    def span(self, run: int) -> float:
        at = datetime.fromtimestamp(run, UTC)
        before = self._latest(at - _TICK, since=None) or self.anchor
        return max((at - before).total_seconds(), 1.0)

    def missed(self, last_run: int, run: int) -> int:
        count, fire = 0, self._after(datetime.fromtimestamp(last_run, UTC))
        end = datetime.fromtimestamp(run, UTC)
        while fire is not None and fire < end and count < MISSED_COUNTED:
            count, fire = count + 1, self._after(fire)
        return count

    def _after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment`. A time in the hour repeated when
        the clocks go back fires once, as under cron, at its first occurrence."""
        # In UTC: arithmetic on a zone's wall clock would step back into the repeated hour.
        fire = self.trigger.get_next_fire_time(None, moment.astimezone(UTC) + _TICK)
        if fire is not None and _first_occurrence(fire).timestamp() <= moment.timestamp():
            fire = self.trigger.get_next_fire_time(None, fire.astimezone(UTC) + _TICK)
        return fire

    def _latest(self, moment: datetime, *, since: datetime | None) -> datetime | None:
        """The latest fire time at or before `moment` and after `since`."""
        for window in _WINDOWS:
            start = moment - window
            bounded = since is not None and start <= since
            if since is not None and bounded:
                start = since + _TICK
            fire = self.trigger.get_next_fire_time(None, start)
            if fire is not None and fire <= moment:
                while (following := self._after(fire)) is not None and following <= moment:
                    fire = following
                return _first_occurrence(fire)
            if bounded:
                return None
        return None


def _first_occurrence(fire: datetime) -> datetime:
    """Of the two moments a wall-clock time of the repeated hour names, the first."""
    return fire.replace(fold=0)


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """APScheduler's trigger for a crontab expression; InvalidCron or InvalidTimezone
    saying what is wrong, also for an expression that never fires (February 30th)."""
    zone = time_zone(timezone)
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidCron(
            f"{expression!r}: a cron expression has 5 fields (minute hour day month "
            f"weekday), not {len(fields)}"
        )
    minute, hour, day, month, weekday = fields
    try:
        trigger = CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekday_names(weekday),
            timezone=zone,
        )
    except ValueError as exc:
        raise InvalidCron(f"{expression!r}: {exc}") from None
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise InvalidCron(f"{expression!r} never fires")
    return trigger


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimezone(f"{name!r} is not an IANA time zone (e.g. Europe/Paris)") from None


def weekday_names(field: str) -> str:
    """A crontab weekday field with its numbers as names: "1-5" is "mon,tue,wed,thu,fri",
    "0,6" "sun,sat" (0 and 7 are Sunday); a field of names only is left as it is."""
    if not any(character.isdigit() for character in field):
        return field
    days: set[int] = set()
    for part in field.split(","):
        spec, _, step = part.partition("/")
        if spec in ("*", "?"):
            low, high = 0, 6
        elif "-" in spec:
            low, high = (_weekday(end) for end in spec.split("-", 1))
        else:
            low = high = _weekday(spec)
            high = 7 if step else high
        if step and not (step.isdigit() and int(step) > 0):
            raise InvalidCron(f"weekday {part!r}: the step must be a whole number above 0")
        if low > high:
            raise InvalidCron(f"weekday {part!r}: the range runs backwards")
        days.update(day % 7 for day in range(low, high + 1, int(step or 1)))
    return ",".join(WEEKDAYS[day] for day in sorted(days))


def _weekday(token: str) -> int:
    if token.lower() in WEEKDAYS:
        return WEEKDAYS.index(token.lower())
    if token.isdigit() and int(token) <= 7:
        return int(token)
    raise InvalidCron(f"weekday {token!r} is not 0-7 or sun-sat")
