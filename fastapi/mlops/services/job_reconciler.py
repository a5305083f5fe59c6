"""Keeping job records true to what Ray says: the API's job reconciler.

Every pending or running record is compared with its Ray job each round, whatever its
age: a job Ray lost or that ran past MLOPS_JOB_MAX_SECONDS is ended with the reason,
an outcome the job could not record (Redis was away) is read back from MLflow, and a
job that died outside our code is marked and alerted, once across API replicas.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.mlflow_registry import MlflowRegistry, MlflowUnavailable
from mlops.clients.quarantine import Quarantine
from mlops.clients.ray_jobs import RayJobsClient, RayJobsError
from mlops.clients.redis import AlertStream, ChampionMoves, JobStore
from mlops.contracts.alerts import AlertLevel
from mlops.contracts.jobs import JobInfo, JobOutcome, JobStatus
from mlops.services.job_records import MalformedJob, parse_job
from mlops.services.model_catalog import ModelCatalog
from mlops.services.recovery import RecoveredOutcome, recover_outcome
from mlops.settings.api import ApiSettings

log = logging.getLogger(__name__)

# How long a job record may exist before Ray must know it.
_SUBMIT_GRACE_SECONDS = 60

_RAY_STATUS = {
    "PENDING": JobStatus.PENDING,
    "RUNNING": JobStatus.RUNNING,
    "SUCCEEDED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
    "STOPPED": JobStatus.STOPPED,
}


class JobReconciler:
    def __init__(
        self,
        *,
        settings: ApiSettings,
        ray: RayJobsClient,
        jobs: JobStore,
        registry: MlflowRegistry,
        alerts: AlertStream,
        history: ChampionMoves,
        quarantine: Quarantine,
        catalog: ModelCatalog,
    ) -> None:
        self._settings = settings
        self._ray = ray
        self._jobs = jobs
        self._registry = registry
        self._alerts = alerts
        self._history = history
        self._quarantine = quarantine
        self._catalog = catalog
        self._indexed_by_model = False

    async def run(self, background: Background) -> None:
        while background.running:
            try:
                await self.reconcile()
                background.completed_round()
            except (RayJobsError, MlflowUnavailable, RedisError, OSError) as exc:
                log.warning("job reconciliation skipped: %s", exc)
            await background.pause(self._settings.job_poll_seconds)

    async def reconcile(self) -> None:
        """Bring every unfinished job record in line with Ray, and alert on jobs that
        died, whatever the record's age. The first round also puts jobs recorded before
        the per-model indexes in their model's.

        The training command records its own outcome; this catches what it cannot: a
        job that crashed before or outside our code (import error, killed worker, lost
        node). Any number of API replicas may run it: the final alert is claimed once
        per job. A record that does not parse is moved to the quarantine, once, and the
        others go on; any other error is the round's (an outage, or a bug the loop's
        restart logs), never a reason to move a valid record aside.
        """
        if not self._indexed_by_model:
            if indexed := await self._jobs.index_by_model(self._catalog.default_name):
                log.info("%d jobs recorded before per-model indexes put in them", indexed)
            self._indexed_by_model = True
        for job_id, raw in (await self._jobs.active()).items():
            try:
                job = parse_job(raw)
            except MalformedJob as exc:
                await self._quarantine.job(job_id, str(exc))
                continue
            if not job.status.is_terminal:
                await self._reconcile_one(job)

    async def _reconcile_one(self, job: JobInfo) -> None:
        job_id = job.job_id
        info = await self._ray.info(job_id)
        if info is None:
            if _age_seconds(job.created_at) < _SUBMIT_GRACE_SECONDS:
                return  # submission may still be on its way to Ray
            ray_status = JobStatus.FAILED
            message: str | None = "Ray has no record of this job (cluster restarted?)"
        else:
            ray_status = _RAY_STATUS.get(info["status"], JobStatus.PENDING)
            message = info.get("message")
        limit = self._settings.job_max_seconds
        if not ray_status.is_terminal and _age_seconds(job.created_at) > limit:
            await self._ray.stop(job_id)
            ray_status = JobStatus.FAILED
            message = f"stopped after running longer than MLOPS_JOB_MAX_SECONDS={limit:g} s"
        if not ray_status.is_terminal:
            if ray_status is JobStatus.RUNNING and job.status is JobStatus.PENDING:
                await self._jobs.mark_running(job_id, _ray_time(info or {}, "start_time"))
            return
        fresh = await self._jobs.get(job_id)
        if fresh is not None and parse_job(fresh).status.is_terminal:
            return  # the job recorded its own outcome meanwhile
        model = await self._catalog.including_archived(job.model)
        name = job.model or self._catalog.default_name
        recovered = None
        if model is not None:
            recovered = await recover_outcome(self._registry, self._settings, model, job_id)
        if recovered is not None:
            await self._record_recovered(job_id, recovered, _ran_seconds(info or {}), model=name)
            return
        error = message or f"job ended as {ray_status.value} without reporting a result"
        finished = _ray_time(info, "end_time") if info else datetime.now(UTC).isoformat()
        seconds = _ran_seconds(info or {})
        outcome: JobOutcome = {"error": error, "finished_at": finished}
        await self._jobs.finish(job_id, ray_status, seconds, outcome)
        log.warning("training job %s ended as %s: %s", job_id, ray_status.value, error)
        level: AlertLevel = "error" if ray_status is JobStatus.FAILED else "warning"
        await self._alerts.publish_for_job(
            job_id,
            level,
            f"Training job {job_id} {ray_status.value}: {error}",
            data={"job_id": job_id, "model": name, "status": ray_status.value},
        )

    async def _record_recovered(
        self, job_id: str, recovered: RecoveredOutcome, seconds: float, *, model: str
    ) -> None:
        """What the job could not record itself, each part once (as the job would)."""
        await self._jobs.finish(job_id, recovered.status, seconds, recovered.outcome)
        if recovered.move is not None:
            await self._history.record_for_job(recovered.move.model or "", job_id, recovered.move)
        data = {"job_id": job_id, "model": model, **recovered.outcome}
        await self._alerts.publish_for_job(job_id, recovered.level, recovered.text, data=data)
        log.warning("training job %s: outcome recovered from MLflow", job_id)


def _ran_seconds(info: dict[str, Any]) -> float:
    """From Ray's start to its end (now, for a job being stopped), in seconds."""
    started = info.get("start_time") or info.get("end_time")
    if not started:
        return 0.0
    ended = info.get("end_time") or datetime.now(UTC).timestamp() * 1000
    return (ended - started) / 1000


def _age_seconds(moment: datetime) -> float:
    return (datetime.now(UTC) - moment).total_seconds()


def _ray_time(info: dict[str, Any], key: str) -> str:
    value = info.get(key)
    moment = datetime.fromtimestamp(value / 1000, tz=UTC) if value else datetime.now(UTC)
    return moment.isoformat()
