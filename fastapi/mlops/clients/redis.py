"""The Redis connection and the two things the platform keeps there: alerts and jobs.

Alerts are a capped Stream, so every reader sees every alert and a reader that was
away resumes from the id it last saw. Jobs are one hash each plus a sorted index.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from mlops.contracts.alerts import AlertKind, AlertLevel
from mlops.contracts.champion import ChampionMove
from mlops.contracts.jobs import JobOutcome, JobStatus, NewJob, SearchProgress
from mlops.schemas import Alert
from mlops.settings import Settings

log = logging.getLogger(__name__)

ALERT_STREAM = "mlops:alerts"
HISTORY_LENGTH = 10_000
JOB_INDEX = "mlops:jobs"
JOB_ACTIVE = "mlops:jobs:active"
JOB_TOTALS = "mlops:jobs:finished"  # status -> jobs that ended so, since the start
JOB_DURATIONS = "mlops:jobs:durations"  # histogram of their run times, per status
# Upper bounds (seconds) of the run-time histogram buckets.
DURATION_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


# How long any reply may take. Blocking reads (the alert feed's XREAD) block for less:
# redis-py's default, 5 s, equals the feed's block, so an idle feed's every read timed
# out, was retried three times and then failed.
SOCKET_TIMEOUT_S = 10.0


def connect(settings: Settings) -> Redis:
    """A client whose pool makes bursts (hundreds of SSE clients connecting at once)
    wait briefly for a connection instead of failing, and which retries a command on a
    fresh connection when a pooled one died with the server (a Redis restart)."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=10,
        username=settings.redis_username,
        password=password,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=3,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
    )
    return Redis(connection_pool=pool, auto_close_connection_pool=True)


class DeployLock:
    """A lock across API replicas, so one of them at a time deploys Serve."""

    def __init__(self, redis: Redis, *, name: str = "mlops:serve-deploy", ttl: int = 300) -> None:
        self._redis = redis
        self._name = name
        self._ttl = ttl

    @asynccontextmanager
    async def held(self) -> AsyncIterator[bool]:
        """Yields True if this caller holds the lock (released on exit), else False."""
        mine = bool(await self._redis.set(self._name, "1", nx=True, ex=self._ttl))
        try:
            yield mine
        finally:
            if mine:
                await self._redis.delete(self._name)


def _now() -> datetime:
    return datetime.now(UTC)


def _decode_alert(entry_id: str, fields: Mapping[str, str]) -> Alert:
    return Alert.model_validate(
        {
            "id": entry_id,
            "level": fields["level"],
            "text": fields["text"],
            "kind": fields["kind"],
            "created_at": fields["created_at"],
            "data": json.loads(fields["data"]) if fields.get("data") else None,
        }
    )


def _decode_alerts(entries: Sequence[tuple[str, Mapping[str, str]]]) -> list[Alert]:
    """The well-formed alerts of `entries`. Anything else written to the stream (junk
    fields, bad JSON, wrong types) is skipped with one log line: one bad entry must not
    stop the feed or the history for everyone."""
    alerts = []
    for entry_id, fields in entries:
        try:
            alerts.append(_decode_alert(entry_id, fields))
        except (KeyError, ValueError, TypeError, ValidationError) as exc:
            log.warning("skipped malformed alert %s: %s", entry_id, str(exc).splitlines()[0])
    return alerts


class AlertStream:
    def __init__(self, redis: Redis, *, max_len: int) -> None:
        self._redis = redis
        self._max_len = max_len

    async def ping(self) -> bool:
        """The server answers (for readiness)."""
        return bool(await self._redis.ping())

    async def publish(
        self, level: AlertLevel, text: str, *, kind: AlertKind, data: dict[str, Any] | None = None
    ) -> Alert:
        fields = {"level": level, "text": text, "kind": kind, "created_at": _now().isoformat()}
        if data:
            fields["data"] = json.dumps(data)
        entry_id = await self._redis.xadd(
            ALERT_STREAM, fields, maxlen=self._max_len, approximate=True
        )
        return _decode_alert(entry_id, fields)

    async def publish_for_job(
        self, job_id: str, level: AlertLevel, text: str, *, data: dict[str, Any]
    ) -> Alert | None:
        """A job's final alert: published once whoever calls (the job, or any API
        replica reconciling it) and however often (retries through an outage). The
        claim and the publication are one atomic step, so neither is lost alone."""
        fields = {
            "level": level,
            "text": text,
            "kind": AlertKind.TRAINING,
            "created_at": _now().isoformat(),
            "data": json.dumps(data),
        }
        entry_id = await self._redis.eval(
            _APPEND_ONCE,
            2,
            job_key(job_id),
            ALERT_STREAM,
            "alerted",
            self._max_len,
            *(part for pair in fields.items() for part in pair),
        )
        return _decode_alert(entry_id, fields) if entry_id else None

    async def recent(self, limit: int) -> list[Alert]:
        """Newest first."""
        return _decode_alerts(await self._redis.xrevrange(ALERT_STREAM, count=limit))

    async def after(self, last_id: str, limit: int = 1000) -> list[Alert]:
        """Alerts newer than last_id, oldest first."""
        return _decode_alerts(
            await self._redis.xrange(ALERT_STREAM, min=f"({last_id}", count=limit)
        )

    async def nth_newest_id(self, n: int) -> str | None:
        """The id just before the n newest entries (None when there are no more than n)."""
        entries = await self._redis.xrevrange(ALERT_STREAM, count=n + 1)
        return entries[n][0] if len(entries) > n else None

    async def last_id(self) -> str:
        newest = await self._redis.xrevrange(ALERT_STREAM, count=1)
        return newest[0][0] if newest else "0-0"

    async def wait_after(self, last_id: str, *, block_ms: int) -> tuple[str, list[Alert]]:
        """Block up to block_ms for entries newer than last_id: (the newest entry id
        read, which moves past malformed entries too; the alerts among them)."""
        if block_ms >= SOCKET_TIMEOUT_S * 1000:
            raise ValueError(f"block_ms must stay under the socket timeout ({SOCKET_TIMEOUT_S} s)")
        reply = await self._redis.xread({ALERT_STREAM: last_id}, block=block_ms, count=500)
        entries = [entry for _, stream_entries in reply for entry in stream_entries]
        return (entries[-1][0] if entries else last_id), _decode_alerts(entries)


def _lua_status_test(variable: str, statuses: list[JobStatus]) -> str:
    """A Lua condition true when `variable` (a JSON-encoded status) is one of them."""
    return " or ".join(f"{variable} == '{json.dumps(status.value)}'" for status in statuses)


_UNFINISHED = [status for status in JobStatus if not status.is_terminal]
_FINISHED = [status for status in JobStatus if status.is_terminal]

# Check-and-set in one step, so a late "running" never overwrites a final status.
_MARK_RUNNING = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if {_lua_status_test("status", _UNFINISHED)} then
  redis.call('HSET', KEYS[1], 'status', ARGV[1])
  redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2])
  return 1
end
return 0
"""


# Progress of an unfinished job (a search's trials): never after its end, never into a
# record that was trimmed away.
_PROGRESS = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if {_lua_status_test("status", _UNFINISHED)} then
  redis.call('HSET', KEYS[1], unpack(ARGV))
  return 1
end
return 0
"""

# Append a job's entry to a stream (its final alert, its move of the champion) once:
# claim field ARGV[1] of the job's record, or do nothing if it was claimed before.
_APPEND_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], 'true') == 0 then
  return false
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
"""

# Admit a job only while fewer than ARGV[1] are active (0: no limit).
_ADMIT_JOB = """
local limit = tonumber(ARGV[1])
if limit > 0 and redis.call('SCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[2])
return 1
"""

# Record a job's end; count it (and its run time) the first time it ends only.
_FINISH_JOB = f"""
local previous = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SREM', KEYS[2], ARGV[1])
if {_lua_status_test("previous", _FINISHED)} then
  return 0
end
local status, seconds = ARGV[2], tonumber(ARGV[3])
redis.call('HINCRBY', KEYS[3], status, 1)
redis.call('HINCRBYFLOAT', KEYS[4], status .. ':sum', seconds)
for _, bound in ipairs({{BUCKETS}}) do
  if seconds <= bound then
    redis.call('HINCRBY', KEYS[4], status .. ':le:' .. bound, 1)
  end
end
redis.call('HINCRBY', KEYS[4], status .. ':le:+Inf', 1)
return 1
""".replace("BUCKETS", ", ".join(map(str, DURATION_BUCKETS)))


class ChampionHistory:
    """Every move of the champion alias, oldest first in the stream: by training jobs
    and by people (promote, roll back). Kept in Redis with the jobs and alerts."""

    def __init__(self, redis: Redis, *, model_name: str) -> None:
        self._redis = redis
        self._key = f"mlops:champion-history:{model_name}"

    async def record(self, move: ChampionMove) -> None:
        await self._redis.xadd(self._key, {"move": move.model_dump_json()}, maxlen=HISTORY_LENGTH)

    async def record_for_job(self, job_id: str, move: ChampionMove) -> None:
        """A training job's move, recorded once however often the job retries."""
        await self._redis.eval(
            _APPEND_ONCE,
            2,
            job_key(job_id),
            self._key,
            "champion_recorded",
            HISTORY_LENGTH,
            "move",
            move.model_dump_json(),
        )

    async def moves(self, limit: int = HISTORY_LENGTH) -> list[ChampionMove]:
        """Newest first; an entry that does not parse is skipped with one log line."""
        moves = []
        for entry_id, fields in await self._redis.xrevrange(self._key, count=limit):
            try:
                moves.append(ChampionMove.model_validate_json(fields["move"]))
            except (KeyError, ValidationError) as exc:
                log.warning("skipped malformed champion move %s: %s", entry_id, exc)
        return moves


class DriftSamples:
    """Recent rows each model version served (one stream entry a row, the newest
    `max_rows` kept), written by the Serve replicas off the hot path and read by
    drift checks."""

    def __init__(self, redis: Redis, *, model_name: str, max_rows: int) -> None:
        self._redis = redis
        self._model_name = model_name
        self._max_rows = max_rows

    def _key(self, version: str) -> str:
        return f"mlops:drift-sample:{self._model_name}:{version}"

    async def append(self, rows_by_version: Mapping[str, Sequence[Sequence[float]]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for version, rows in rows_by_version.items():
                for row in rows:
                    pipe.xadd(
                        self._key(version),
                        {"row": json.dumps(list(row))},
                        maxlen=self._max_rows,
                        approximate=True,
                    )
            await pipe.execute()

    async def recent(self, version: str) -> list[list[float]]:
        """The newest rows served by `version` (at most max_rows), newest first; an entry
        that is not a row of numbers is skipped."""
        entries = await self._redis.xrevrange(self._key(version), count=self._max_rows)
        rows = []
        for _, fields in entries:
            try:
                row = json.loads(fields["row"])
            except (KeyError, ValueError):
                continue
            if isinstance(row, list) and all(isinstance(v, int | float) for v in row):
                rows.append([float(v) for v in row])
        return rows


def job_key(job_id: str) -> str:
    return f"mlops:job:{job_id}"


class JobStore:
    """Training job records. Values are JSON so types survive the round trip."""

    def __init__(self, redis: Redis, *, history: int) -> None:
        self._redis = redis
        self._history = history

    async def create(self, job_id: str, *, fields: NewJob, max_active: int = 0) -> bool:
        """Record a new pending job with `fields` (what it was asked to do); False (and
        nothing recorded) if `max_active` jobs are already pending or running. The check
        and the write are one atomic step, so API replicas cannot overshoot the limit
        together. 0 means no limit."""
        created = _now()
        record = {
            **fields,
            "job_id": job_id,
            "status": JobStatus.PENDING,
            "created_at": created.isoformat(),
        }
        pairs = [part for k, v in record.items() for part in (k, json.dumps(v))]
        admitted = await self._redis.eval(
            _ADMIT_JOB,
            3,
            JOB_ACTIVE,
            job_key(job_id),
            JOB_INDEX,
            max_active,
            job_id,
            created.timestamp(),
            *pairs,
        )
        if admitted:
            await self._trim()
        return bool(admitted)

    async def _trim(self) -> None:
        stale = await self._redis.zrange(JOB_INDEX, 0, -self._history - 1)
        if stale:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(JOB_INDEX, *stale)
                pipe.srem(JOB_ACTIVE, *stale)
                pipe.delete(*(job_key(job_id) for job_id in stale))
                await pipe.execute()

    async def finish(
        self, job_id: str, status: JobStatus, seconds: float, outcome: JobOutcome
    ) -> bool:
        """Record how a job ended (the last writer wins the fields); True the first
        time it ends, when it is also counted in the job totals and run times."""
        record = {"status": status, **outcome}
        pairs = [part for k, v in record.items() for part in (k, json.dumps(v))]
        first = await self._redis.eval(
            _FINISH_JOB,
            4,
            job_key(job_id),
            JOB_ACTIVE,
            JOB_TOTALS,
            JOB_DURATIONS,
            job_id,
            status,
            max(seconds, 0.0),
            *pairs,
        )
        return bool(first)

    async def totals(self) -> tuple[dict[str, int], dict[str, float]]:
        """(jobs ended per status, run-time histogram fields) since the start."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(JOB_TOTALS)
            pipe.hgetall(JOB_DURATIONS)
            counts, durations = await pipe.execute()
        return (
            {k: int(v) for k, v in counts.items()},
            {k: float(v) for k, v in durations.items()},
        )

    async def progress(self, job_id: str, progress: SearchProgress) -> bool:
        """Record how far an unfinished job is; False once it has finished."""
        pairs = [part for k, v in progress.items() for part in (k, json.dumps(v))]
        return bool(await self._redis.eval(_PROGRESS, 1, job_key(job_id), *pairs))

    async def mark_running(self, job_id: str, started_at: str) -> bool:
        """Mark a job running (first start time wins); False once it has finished."""
        changed = await self._redis.eval(
            _MARK_RUNNING,
            1,
            job_key(job_id),
            json.dumps(JobStatus.RUNNING),
            json.dumps(started_at),
        )
        return bool(changed)

    async def delete(self, job_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(JOB_INDEX, job_id)
            pipe.srem(JOB_ACTIVE, job_id)
            pipe.delete(job_key(job_id))
            await pipe.execute()

    async def get(self, job_id: str) -> dict[str, str] | None:
        """The record's fields as stored (JSON each), for the caller to parse."""
        return await self._redis.hgetall(job_key(job_id)) or None

    async def recent(self, limit: int) -> dict[str, dict[str, str]]:
        """The newest `limit` records as stored, by job id, newest first."""
        return await self._records(await self._redis.zrevrange(JOB_INDEX, 0, limit - 1))

    async def active(self) -> dict[str, dict[str, str]]:
        """Every pending or running job's record as stored, whatever its age (an id
        whose record is gone maps to {})."""
        return await self._records(sorted(await self._redis.smembers(JOB_ACTIVE)))

    async def _records(self, job_ids: list[str]) -> dict[str, dict[str, str]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(job_key(job_id))
            raws = await pipe.execute()  # one round trip, not one per job
        return dict(zip(job_ids, raws, strict=True))
