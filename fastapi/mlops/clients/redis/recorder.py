"""The job recorder (`contracts.recording.JobRecording`) on Redis, for the code that runs
inside Ray: the job's entrypoints and the warm trainer hand it to the training and the
search. Synchronous on the outside; each call opens a connection and runs the stores'
async calls on its own event loop (a job records a handful of times)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mlops.clients.redis.alerts import AlertStream
from mlops.clients.redis.champion_moves import ChampionMoves
from mlops.clients.redis.connection import connect
from mlops.clients.redis.jobs import JobStore
from mlops.contracts.alerts import AlertLevel
from mlops.contracts.champion import ChampionMove
from mlops.contracts.jobs import JobOutcome, JobStatus, SearchProgress
from mlops.retry import backoff
from mlops.settings.training import TrainingSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobRecorder:
    def __init__(self, settings: TrainingSettings) -> None:
        self._settings = settings

    def mark_running(self, job_id: str) -> None:
        started_at = datetime.now(UTC).isoformat()
        try:
            asyncio.run(
                self._with_redis(lambda redis: self._jobs(redis).mark_running(job_id, started_at))
            )
        except (RedisError, OSError) as exc:
            log.warning("could not mark job %s running (Redis: %s); training anyway", job_id, exc)

    def claim(self, job_id: str) -> bool:
        """True for the one caller that runs the job's work (the trainer's queue reader
        or the job's entrypoint, whichever comes first), while the job is unfinished.
        With Redis unreachable, True: the work goes on, as its recording waits for Redis
        (both callers are in the one trainer, which runs a job once)."""
        try:
            return asyncio.run(self._with_redis(lambda redis: self._jobs(redis).claim_work(job_id)))
        except (RedisError, OSError) as exc:
            log.warning(
                "job %s: could not claim its work (Redis: %s); training anyway", job_id, exc
            )
            return True

    def ended(self, job_id: str) -> bool:
        """Whether the job's record says it has ended while its work still runs: Ray
        stopped it before its entrypoint could tell the trainer, or the API's time
        limit failed it. False when Redis cannot tell: the work goes on."""
        try:
            status = asyncio.run(self._with_redis(lambda redis: self._jobs(redis).status(job_id)))
        except (RedisError, OSError) as exc:
            log.warning("job %s: could not read its status (Redis: %s)", job_id, exc)
            return False
        return status is not None and status.is_terminal

    def recorded_in(self, job_id: str, seconds: float) -> None:
        note = {"recording_seconds": round(seconds, 3)}
        try:
            asyncio.run(self._with_redis(lambda redis: self._jobs(redis).note(job_id, note)))
        except (RedisError, OSError) as exc:  # informative: the outcome is recorded
            log.warning("could not note job %s's recording time: %s", job_id, exc)

    def progress(self, job_id: str, progress: SearchProgress) -> None:
        try:
            asyncio.run(
                self._with_redis(lambda redis: self._jobs(redis).progress(job_id, progress))
            )
        except (RedisError, OSError) as exc:  # informative: never fail the search on it
            log.warning("could not record the search's progress: %s", exc)

    def finish(
        self,
        job_id: str,
        *,
        status: JobStatus,
        seconds: float,
        outcome: JobOutcome,
        alert: tuple[AlertLevel, str],
        model: str,
        move: ChampionMove | None = None,
    ) -> None:
        """Retried through a Redis outage of up to MLOPS_REDIS_WAIT_SECONDS, so an outcome
        reached while Redis is down is recorded, and alerted, once it is back. The job
        knows its outcome best, so its fields win over the reconciler's."""
        settings = self._settings

        async def record(redis: Redis) -> None:
            await self._jobs(redis).finish(job_id, status, seconds, outcome)
            if move is not None and move.model is not None:
                await ChampionMoves(redis).record_for_job(move.model, job_id, move)
            level, text = alert
            alerts = AlertStream(redis, max_len=settings.alert_history)
            data = {"job_id": job_id, "model": model, "status": status, **outcome}
            await alerts.publish_for_job(job_id, level, text, data=data)

        async def until_recorded() -> None:
            async for retry in backoff(
                on=(RedisError, OSError),
                first=0.5,
                cap=10.0,
                within=settings.redis_wait_seconds,
                what="recording the outcome in Redis",
            ):
                with retry:
                    await self._with_redis(record)

        asyncio.run(until_recorded())

    def _jobs(self, redis: Redis) -> JobStore:
        return JobStore(redis, history=self._settings.job_history)

    async def _with_redis(self, use: Callable[[Redis], Awaitable[T]]) -> T:
        redis = connect(self._settings)
        try:
            return await use(redis)
        finally:
            await redis.aclose()
