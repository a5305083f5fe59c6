"""Training job records: one hash each (JSON values, so types survive the round trip),
a sorted index, the set of active ones, and counters of how they ended."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from redis.asyncio import Redis

from mlops.clients.redis.keys import (
    DURATION_BUCKETS,
    JOB_ACTIVE,
    JOB_DURATIONS,
    JOB_INDEX,
    JOB_TOTALS,
    job_key,
    model_jobs_key,
)
from mlops.clients.redis.scripts import (
    ADMIT_JOB,
    CLAIM_WORK,
    FINISH_JOB,
    MARK_RUNNING,
    PROGRESS,
    SET_IF_RECORDED,
)
from mlops.contracts.jobs import JobOutcome, JobStatus, NewJob, SearchProgress


def _encoded(statuses: list[JobStatus]) -> str:
    """Statuses as the scripts compare them: JSON-encoded, as stored, in a JSON list."""
    return json.dumps([json.dumps(status.value) for status in statuses])


_UNFINISHED = _encoded([status for status in JobStatus if not status.is_terminal])
_FINISHED = _encoded([status for status in JobStatus if status.is_terminal])
_BOUNDS = json.dumps(DURATION_BUCKETS)


def _now() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """Training job records. Values are JSON so types survive the round trip. Each is in
    the index of all jobs and in its model's; a model keeps its newest `history` jobs,
    however often other models train."""

    def __init__(self, redis: Redis, *, history: int) -> None:
        self._redis = redis
        self._history = history
        self._admit = redis.register_script(ADMIT_JOB)
        self._finish = redis.register_script(FINISH_JOB)
        self._progress = redis.register_script(PROGRESS)
        self._mark_running = redis.register_script(MARK_RUNNING)
        self._set_if_recorded = redis.register_script(SET_IF_RECORDED)
        self._claim_work = redis.register_script(CLAIM_WORK)

    async def create(self, job_id: str, *, model: str, fields: NewJob, max_active: int = 0) -> bool:
        """Record a new pending job of `model` with `fields` (what it was asked to do);
        False (and nothing recorded) if `max_active` jobs are already pending or running.
        The check and the write are one atomic step, so API replicas cannot overshoot the
        limit together. 0 means no limit."""
        created = _now()
        record = {
            **fields,
            "model": model,
            "job_id": job_id,
            "status": JobStatus.PENDING,
            "created_at": created.isoformat(),
        }
        pairs = [part for k, v in record.items() for part in (k, json.dumps(v))]
        admitted = await self._admit(
            keys=[JOB_ACTIVE, job_key(job_id), JOB_INDEX, model_jobs_key(model)],
            args=[max_active, job_id, created.timestamp(), *pairs],
        )
        if admitted:
            await self._trim(model)
        return bool(admitted)

    async def _trim(self, model: str) -> None:
        """Forget the model's jobs beyond its newest `history`."""
        index = model_jobs_key(model)
        stale = await self._redis.zrange(index, 0, -self._history - 1)
        if stale:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(index, *stale)
                pipe.zrem(JOB_INDEX, *stale)
                pipe.srem(JOB_ACTIVE, *stale)
                pipe.delete(*(job_key(job_id) for job_id in stale))
                await pipe.execute()

    async def index_by_model(self, default_model: str) -> int:
        """Put every job that is in no model's index yet into its model's: jobs recorded
        before the per-model indexes, and those before models had names, which are the
        default model's (their record says so from then on). Idempotent; the jobs it
        indexed."""
        scored = await self._redis.zrange(JOB_INDEX, 0, -1, withscores=True)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, _ in scored:
                pipe.hget(job_key(job_id), "model")
            models = await pipe.execute()
        owners = {job_id: (json.loads(m) if m else None, score)
                  for (job_id, score), m in zip(scored, models, strict=True)}  # fmt: skip
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, (model, _) in owners.items():
                pipe.zscore(model_jobs_key(model or default_model), job_id)
            indexed = await pipe.execute()
        missing = [(job_id, owner) for (job_id, owner), found
                   in zip(owners.items(), indexed, strict=True) if found is None]  # fmt: skip
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, (model, score) in missing:
                pipe.zadd(model_jobs_key(model or default_model), {job_id: score})
                if model is None:
                    pipe.hset(job_key(job_id), "model", json.dumps(default_model))
            await pipe.execute()
        return len(missing)

    async def finish(
        self, job_id: str, status: JobStatus, seconds: float, outcome: JobOutcome
    ) -> bool:
        """Record how a job ended (the last writer wins the fields); True the first
        time it ends, when it is also counted in the job totals and run times."""
        record = {"status": status, **outcome}
        pairs = [part for k, v in record.items() for part in (k, json.dumps(v))]
        first = await self._finish(
            keys=[job_key(job_id), JOB_ACTIVE, JOB_TOTALS, JOB_DURATIONS],
            args=[job_id, status, max(seconds, 0.0), _FINISHED, _BOUNDS, *pairs],
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
        return bool(await self._progress(keys=[job_key(job_id)], args=[_UNFINISHED, *pairs]))

    async def mark_running(self, job_id: str, started_at: str) -> bool:
        """Mark a job running (first start time wins); False once it has finished."""
        changed = await self._mark_running(
            keys=[job_key(job_id)],
            args=[_UNFINISHED, json.dumps(JobStatus.RUNNING), json.dumps(started_at)],
        )
        return bool(changed)

    async def claim_work(self, job_id: str) -> bool:
        """True for the one caller that may run the job's work (it is unfinished)."""
        return bool(await self._claim_work(keys=[job_key(job_id)], args=[_UNFINISHED]))

    async def note(self, job_id: str, fields: Mapping[str, object]) -> bool:
        """Add informative fields (when Ray accepted it, how long its recording took)
        to a record that exists; False when there is none."""
        pairs = [part for k, v in fields.items() for part in (k, json.dumps(v))]
        return bool(await self._set_if_recorded(keys=[job_key(job_id)], args=pairs))

    async def delete(self, job_id: str, model: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(JOB_INDEX, job_id)
            pipe.zrem(model_jobs_key(model), job_id)
            pipe.srem(JOB_ACTIVE, job_id)
            pipe.delete(job_key(job_id))
            await pipe.execute()

    async def status(self, job_id: str) -> JobStatus | None:
        """The status the record holds; None when there is no record."""
        found = await self._redis.hget(job_key(job_id), "status")
        return JobStatus(json.loads(found)) if found is not None else None

    async def get(self, job_id: str) -> dict[str, str] | None:
        """The record's fields as stored (JSON each), for the caller to parse."""
        return await self._redis.hgetall(job_key(job_id)) or None

    async def recent(self, limit: int, *, model: str | None = None) -> dict[str, dict[str, str]]:
        """The newest `limit` records as stored (with `model`, that model's), by job id,
        newest first."""
        index = JOB_INDEX if model is None else model_jobs_key(model)
        return await self._records(await self._redis.zrevrange(index, 0, limit - 1))

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
