"""Periodic training and "model is stale" watches that survive restarts and replicas.

Schedules are APScheduler 3 jobs in a Redis job store, pointing at the module-level
`run_schedule` by name, so they outlive the process that created them. APScheduler 3
cannot share a store between processes without firing each run in every process, so
each run claims its slot in Redis first (SET NX on schedule id + interval number):
with any number of API replicas, one of them runs it and the others skip.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from redis.connection import parse_url

from mlops.clients.mlflow_registry import MlflowUnavailable
from mlops.ml.model import validate_hyperparameters
from mlops.schemas import ScheduleInfo
from mlops.services.container import Services
from mlops.services.training import TooManyTrainings, submit_training

log = logging.getLogger(__name__)

JOBS_KEY = "mlops:schedules"
RUN_TIMES_KEY = "mlops:schedules:run-times"
_FUNC = "mlops.services.schedules:run_schedule"


class TooManySchedules(Exception):
    """The limit of schedules and watches is reached; nothing was added."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} schedules and watches exist (MLOPS_MAX_SCHEDULES);"
            " remove one with DELETE /kill_scheduled_job/{id}"
        )


@dataclass
class _Runtime:
    """What scheduled runs need from the process that hosts them."""

    services: Services
    loop: asyncio.AbstractEventLoop
    inflight: set[Future] = field(default_factory=set)


_runtime: _Runtime | None = None
# Held while a run is handed to the loop and while shutdown takes the runtime away, so
# that every run in flight is one that shutdown sees and cancels.
_runtime_lock = threading.Lock()


def _run_on_loop(coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
    """Run a coroutine on the API's event loop from a scheduler thread."""
    with _runtime_lock:
        runtime = _runtime
        if runtime is None:
            coro.close()
            log.info("a scheduled run fell due while the API was stopping: skipped")
            return None
        future: Future = asyncio.run_coroutine_threadsafe(coro, runtime.loop)
        runtime.inflight.add(future)
    try:
        return future.result(timeout)
    except CancelledError:
        log.info("a scheduled run was cancelled by shutdown; its slot stays claimed")
    finally:
        with _runtime_lock:
            runtime.inflight.discard(future)


def run_schedule(schedule_id: str, kind: str, minutes: int, anchor: str, **params: Any) -> None:
    """Entry point of every scheduled run (referenced by name in the job store)."""
    _run_on_loop(_run(schedule_id, kind, minutes, datetime.fromisoformat(anchor), params))


async def _run(
    schedule_id: str, kind: str, minutes: int, anchor: datetime, params: dict[str, Any]
) -> None:
    assert _runtime is not None
    services = _runtime.services
    interval = minutes * services.settings.schedule_minute_seconds
    elapsed = (datetime.now(UTC) - anchor).total_seconds()
    slot = max(1, round(elapsed / interval))
    claimed = await services.redis.set(
        f"mlops:schedule-run:{schedule_id}:{slot}", "1", nx=True, ex=math.ceil(interval * 2 + 60)
    )
    if not claimed:
        log.debug("schedule %s run %d already taken by another replica", schedule_id, slot)
        return
    last = await services.redis.hget(_runs_key(schedule_id), "slot")
    if last is not None and slot - int(last) > 1:
        log.warning(
            "schedule %s: %d run(s) missed while no API was up, coalesced into this one",
            schedule_id,
            slot - int(last) - 1,
        )
    await services.redis.hset(
        _runs_key(schedule_id), mapping={"slot": slot, "last_run_at": datetime.now(UTC).isoformat()}
    )
    await services.redis.hincrby(_runs_key(schedule_id), "runs", 1)
    if kind == "training":
        try:
            job_id = await submit_training(
                settings=services.settings,
                ray=services.ray,
                jobs=services.jobs,
                registry=services.registry,
                hyperparameters=params.get("hyperparameters", {}),
                source=schedule_id,
            )
        except (TooManyTrainings, MlflowUnavailable) as exc:
            services.metrics.schedule_runs.labels(kind, "skipped").inc()
            log.warning("schedule %s run %d skipped: %s", schedule_id, slot, exc)
            await services.alerts.publish(
                "warning",
                f"Schedule {schedule_id} skipped a run: {exc}",
                kind="schedule",
                data={"schedule_id": schedule_id},
            )
            return
        services.metrics.schedule_runs.labels(kind, "submitted").inc()
        log.info("schedule %s run %d submitted training job %s", schedule_id, slot, job_id)
    else:
        await watch_model(services, minutes=minutes, schedule_id=schedule_id)
        services.metrics.schedule_runs.labels(kind, "checked").inc()


async def watch_model(services: Services, *, minutes: int, schedule_id: str) -> None:
    """Alert when the newest registered version is older than `minutes`, or absent."""
    settings = services.settings
    latest = await services.registry.latest_version(settings.model_name)
    data = {"schedule_id": schedule_id, "minutes": minutes}
    if latest is None:
        await services.alerts.publish(
            "warning",
            f"No model is registered yet under {settings.model_name!r}: "
            "trigger a training run to create one.",
            kind="watch",
            data=data,
        )
        return
    age = datetime.now(UTC) - latest.created_at
    if age > timedelta(seconds=minutes * settings.schedule_minute_seconds):
        await services.alerts.publish(
            "warning",
            f"Model has not been updated in the last {minutes} minutes.",
            kind="watch",
            data={**data, "version": latest.version},
        )


def _runs_key(schedule_id: str) -> str:
    return f"mlops:schedule-runs:{schedule_id}"


class Schedules:
    """The scheduler of one API process; every process sees the same schedules."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        connection = parse_url(settings.redis_url)
        if settings.redis_password:
            connection["password"] = settings.redis_password.get_secret_value()
        store = RedisJobStore(
            db=connection.pop("db", 0),
            jobs_key=JOBS_KEY,
            run_times_key=RUN_TIMES_KEY,
            socket_connect_timeout=3,
            socket_timeout=5,
            **connection,
        )
        self._services = services
        self._scheduler = BackgroundScheduler(
            jobstores={"default": store},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=UTC,
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        global _runtime
        _runtime = _Runtime(self._services, loop)
        self._scheduler.start()

    def wakeup(self) -> None:
        """Look at the shared store again (schedules added by other replicas)."""
        self._scheduler.wakeup()

    def shutdown(self) -> None:
        """Stop firing, and cancel runs in flight: their threads would otherwise wait
        on an event loop that is going away, and hold the process open."""
        global _runtime
        self._scheduler.shutdown(wait=False)
        with _runtime_lock:
            runtime, _runtime = _runtime, None
            inflight = list(runtime.inflight) if runtime else []
        for future in inflight:
            future.cancel()

    def add(
        self, *, kind: str, minutes: int, hyperparameters: dict[str, Any] | None
    ) -> ScheduleInfo:
        settings = self._services.settings
        if len(self._scheduler.get_jobs()) >= settings.max_schedules:
            raise TooManySchedules(settings.max_schedules)
        params: dict[str, Any] = {}
        if kind == "training":
            params["hyperparameters"] = validate_hyperparameters(
                hyperparameters or {},
                max_n_estimators=settings.max_n_estimators,
                max_depth_limit=settings.max_depth_limit,
            )
        schedule_id = f"{kind}-{uuid.uuid4().hex[:12]}"
        anchor = datetime.now(UTC)
        job = self._scheduler.add_job(
            _FUNC,
            trigger=IntervalTrigger(
                seconds=minutes * settings.schedule_minute_seconds, start_date=anchor, timezone=UTC
            ),
            id=schedule_id,
            name=f"{kind} every {minutes} min",
            kwargs={
                "schedule_id": schedule_id,
                "kind": kind,
                "minutes": minutes,
                "anchor": anchor.isoformat(),
                **params,
            },
        )
        log.info("added schedule %s: %s", schedule_id, job.name)
        return self._info(job, runs={})

    def remove(self, schedule_id: str) -> bool:
        try:
            self._scheduler.remove_job(schedule_id)
        except JobLookupError:
            return False
        log.info("removed schedule %s", schedule_id)
        return True

    def jobs(self) -> list[Job]:
        return self._scheduler.get_jobs()

    @staticmethod
    def _info(job: Job, runs: dict[str, str]) -> ScheduleInfo:
        kwargs = job.kwargs
        return ScheduleInfo(
            schedule_id=job.id,
            kind=kwargs["kind"],
            minutes=kwargs["minutes"],
            hyperparameters=kwargs.get("hyperparameters"),
            created_at=datetime.fromisoformat(kwargs["anchor"]),
            next_run_time=job.next_run_time,
            last_run_at=datetime.fromisoformat(runs["last_run_at"])
            if "last_run_at" in runs
            else None,
            runs=int(runs.get("runs", 0)),
        )

    async def list(self) -> list[ScheduleInfo]:
        jobs = await asyncio.to_thread(self.jobs)
        infos = []
        for job in jobs:
            runs = await self._services.redis.hgetall(_runs_key(job.id))
            infos.append(self._info(job, runs))
        return sorted(infos, key=lambda info: info.created_at)
