"""Schedules in Redis: one JSON record each, their run counts, and per-run claims.

Records are plain JSON (never pickles: whoever can write to Redis must not be able to
run code in the API), shared by every API replica. A run is claimed with SET NX on
(schedule id, run number), so with any number of replicas each run happens once.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from redis.asyncio import Redis

from mlops.contracts.model_definition import is_model_name
from mlops.schemas import ScheduleKind

log = logging.getLogger(__name__)

SCHEDULES = "mlops:schedule-records"
# A schedule's period, in minutes: at least one, at most a week (as the API accepts).
MIN_MINUTES, MAX_MINUTES = 1, 7 * 24 * 60
# Keys of the scheduler before JSON records (APScheduler's RedisJobStore: pickles).
LEGACY_PICKLE_KEYS = ("mlops:schedules", "mlops:schedules:run-times")

# Add a record only while fewer than ARGV[1] exist: the check and the write are one
# step, so replicas adding at once cannot overshoot the cap.
_ADD_CAPPED = """
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""


@dataclass(frozen=True)
class ScheduleRecord:
    """Runs every `minutes` from `created_at`, or at the times of `cron` in `timezone`
    after it (mlops.cadence)."""

    schedule_id: str
    kind: ScheduleKind
    minutes: int | None
    created_at: datetime
    params: dict[str, Any]
    model: str | None = None  # None: the default model (records from before models had names)
    cron: str | None = None
    timezone: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "schedule_id": self.schedule_id,
                "kind": self.kind,
                "minutes": self.minutes,
                "cron": self.cron,
                "timezone": self.timezone,
                "created_at": self.created_at.isoformat(),
                "params": self.params,
                "model": self.model,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ScheduleRecord:
        """The record, checked as the API checks a new one; ValueError saying what is
        wrong (a period the scheduler cannot divide by, a time without its zone...)."""
        try:
            raw = json.loads(text)
            kind, minutes = raw["kind"], raw.get("minutes")
            cron, timezone = raw.get("cron"), raw.get("timezone")
            created_at = datetime.fromisoformat(raw["created_at"])
            params = raw.get("params") or {}
            model = raw.get("model")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a schedule record: {type(exc).__name__}: {exc}") from None
        if kind not in get_args(ScheduleKind):
            raise ValueError(f"unknown schedule kind {kind!r}")
        if (minutes is None) == (cron is None):
            raise ValueError("a schedule runs every 'minutes' or by 'cron': exactly one")
        if minutes is not None and (
            type(minutes) is not int or not MIN_MINUTES <= minutes <= MAX_MINUTES
        ):
            raise ValueError(f"minutes must be {MIN_MINUTES} to {MAX_MINUTES}, not {minutes!r}")
        if cron is not None and not (isinstance(cron, str) and isinstance(timezone, str)):
            raise ValueError(f"cron {cron!r} and timezone {timezone!r} must be text")
        if created_at.tzinfo is None:
            raise ValueError(f"created_at {raw['created_at']!r} has no time zone")
        if not isinstance(params, dict):
            raise ValueError(f"params must be an object, not {type(params).__name__}")
        if model is not None and not is_model_name(model):
            raise ValueError(f"model {model!r} is not a model name")
        return cls(
            str(raw["schedule_id"]), kind, minutes, created_at, params, model, cron, timezone
        )


@dataclass(frozen=True)
class RunCount:
    runs: int = 0
    last_run: int | None = None  # number of the last run carried out
    last_run_at: datetime | None = None


def runs_key(schedule_id: str) -> str:
    return f"mlops:schedule-runs:{schedule_id}"


class ScheduleStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def add(self, record: ScheduleRecord, *, limit: int) -> bool:
        """Store the record; False (nothing stored) when `limit` schedules exist."""
        added = await self._redis.eval(
            _ADD_CAPPED, 1, SCHEDULES, limit, record.schedule_id, record.to_json()
        )
        return bool(added)

    async def remove(self, schedule_id: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(SCHEDULES, schedule_id)
            pipe.delete(runs_key(schedule_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def records(self) -> tuple[list[ScheduleRecord], dict[str, str]]:
        """Every schedule that parses, and the reason of each one that does not (by id),
        for the caller to move aside."""
        records, malformed = [], {}
        for schedule_id, text in (await self._redis.hgetall(SCHEDULES)).items():
            try:
                records.append(ScheduleRecord.from_json(text))
            except ValueError as exc:
                malformed[schedule_id] = str(exc)
        return records, malformed

    async def run_counts(self, schedule_ids: list[str]) -> dict[str, RunCount]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for schedule_id in schedule_ids:
                pipe.hgetall(runs_key(schedule_id))
            replies = await pipe.execute()
        return {
            schedule_id: RunCount(
                runs=int(raw.get("runs", 0)),
                last_run=int(raw["slot"]) if "slot" in raw else None,
                last_run_at=datetime.fromisoformat(raw["last_run_at"])
                if "last_run_at" in raw
                else None,
            )
            for schedule_id, raw in zip(schedule_ids, replies, strict=True)
        }

    async def claim(self, schedule_id: str, run: int, *, period_seconds: float) -> bool:
        """True for the one caller, across replicas, that gets to carry out this run."""
        claimed = await self._redis.set(
            f"mlops:schedule-run:{schedule_id}:{run}",
            "1",
            nx=True,
            ex=math.ceil(period_seconds * 2 + 60),
        )
        return bool(claimed)

    async def record_run(self, schedule_id: str, run: int, at: datetime) -> RunCount:
        """Count a run carried out; returns the count as it was before."""
        key = runs_key(schedule_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.hset(key, mapping={"slot": run, "last_run_at": at.isoformat()})
            pipe.hincrby(key, "runs", 1)
            before, _, _ = await pipe.execute()
        return RunCount(
            runs=int(before.get("runs", 0)),
            last_run=int(before["slot"]) if "slot" in before else None,
        )

    async def drop_legacy_pickles(self) -> list[str]:
        """Remove the previous scheduler's pickled jobs (never loaded: loading a pickle
        runs code); returns the ids of the schedules they held, to be re-created."""
        ids = await self._redis.hkeys(LEGACY_PICKLE_KEYS[0])
        if await self._redis.exists(*LEGACY_PICKLE_KEYS):
            await self._redis.delete(*LEGACY_PICKLE_KEYS)
        return list(ids)
