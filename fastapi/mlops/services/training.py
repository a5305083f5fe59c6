"""Submitting training jobs to Ray and keeping their records true to what Ray says."""

from __future__ import annotations

import logging
import shlex
import uuid
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.ray_jobs import RayJobsClient, RayJobsError, SubmissionUnconfirmed
from mlops.clients.redis import DURATION_BUCKETS, AlertStream, ChampionHistory, JobStore
from mlops.ml import search_space
from mlops.ml.data import DatasetLocationError, check_location
from mlops.ml.model import InvalidField, validate_hyperparameters
from mlops.ml.specs import SearchSpec, TrainingSpec
from mlops.schemas import AlertLevel, JobInfo, JobStatus, TuneRequest
from mlops.services.recovery import RecoveredOutcome, recover_outcome
from mlops.settings import Settings
from mlops.telemetry import JobTotals

log = logging.getLogger(__name__)

# MLflow's client retries for minutes by default; a job should fail while someone waits.
_MLFLOW_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}

# What a search's trial reserves (mlops.ml.search).
TRIAL_CPUS = 1.0

# How long a job record may exist before Ray must know it.
_SUBMIT_GRACE_SECONDS = 60

_RAY_STATUS = {
    "PENDING": JobStatus.PENDING,
    "RUNNING": JobStatus.RUNNING,
    "SUCCEEDED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
    "STOPPED": JobStatus.STOPPED,
}


class ClusterTooSmall(Exception):
    """The cluster cannot place the job at all (the message has the numbers)."""


class TooManyTrainings(Exception):
    """The limit of pending and running training jobs is reached; nothing was created."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} training jobs are already pending or running (MLOPS_MAX_ACTIVE_TRAININGS);"
            " retry when one finishes"
        )


def new_job_id(kind: str = "train") -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


class Training:
    """Training jobs and searches: submitted to Ray, recorded in Redis, kept true to
    what Ray says."""

    def __init__(
        self,
        *,
        settings: Settings,
        ray: RayJobsClient,
        jobs: JobStore,
        registry: MlflowRegistry,
        alerts: AlertStream,
        history: ChampionHistory,
    ) -> None:
        self._settings = settings
        self._ray = ray
        self._jobs = jobs
        self._registry = registry
        self._alerts = alerts
        self._history = history

    def dataset(self, uri: str | None, target: str | None) -> tuple[str, str]:
        """(dataset URI, target column) of a request; a given URI must be inside the
        allowed locations and in a format the platform reads (InvalidField if not)."""
        settings = self._settings
        if uri is None:
            return settings.dataset_uri, target or settings.target_column
        try:
            checked = check_location(uri, settings.dataset_locations)
        except DatasetLocationError as exc:
            raise InvalidField(("dataset_uri",), str(exc)) from exc
        return checked, target or settings.target_column

    def check_hyperparameters(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        return validate_hyperparameters(
            hyperparameters,
            max_n_estimators=self._settings.max_n_estimators,
            max_depth_limit=self._settings.max_depth_limit,
        )

    def check_search(self, request: TuneRequest) -> dict[str, Any]:
        """The request's search space, checked with its trial count (InvalidField)."""
        settings = self._settings
        if request.trials > settings.tune_max_trials:
            raise InvalidField(
                ("trials",),
                f"'trials' must be ≤ {settings.tune_max_trials} (MLOPS_TUNE_MAX_TRIALS)",
            )
        return search_space.validate(
            request.search_space,
            max_n_estimators=settings.max_n_estimators,
            max_depth_limit=settings.max_depth_limit,
        )

    async def submit(
        self,
        hyperparameters: dict[str, Any],
        *,
        dataset_uri: str | None = None,
        target_column: str | None = None,
        source: str = "api",
    ) -> str:
        """Validate, record and submit one training job; returns its id.

        Raises InvalidField, MlflowUnavailable (a job could not register its model) or
        TooManyTrainings before anything is created, and RayJobsError (after removing
        the record) when Ray does not take the job.
        """
        checked = self.check_hyperparameters(hyperparameters)
        uri, target = self.dataset(dataset_uri, target_column)
        job_id = new_job_id()
        spec = TrainingSpec(job_id, checked, uri, target)
        record = {"kind": "training", "hyperparameters": checked, "source": source}
        await self._launch(
            job_id,
            record={**record, "dataset_uri": uri, "target_column": target},
            command=["python", "-m", "mlops.ml.job", "--spec", spec.as_json()],
        )
        log.info("submitted training job %s from %s with %s on %s", job_id, source, checked, uri)
        return job_id

    async def check_search_capacity(self) -> None:
        """Raise ClusterTooSmall when no trial could ever start: each needs one CPU that
        Serve's replicas do not hold (Tune would otherwise wait for ever, keeping its
        admission slot)."""
        settings = self._settings
        total = await self._ray.cluster_cpus()
        held = settings.serve_replicas * settings.serve_replica_cpus
        if total - held < TRIAL_CPUS:
            raise ClusterTooSmall(
                f"a search runs each trial on {TRIAL_CPUS:g} CPU; the cluster has {total:g} "
                f"CPUs and Serve's {settings.serve_replicas} replicas hold {held:g} "
                f"({settings.serve_replica_cpus:g} each), leaving {max(total - held, 0):g}: "
                "lower MLOPS_SERVE_REPLICA_CPUS or MLOPS_SERVE_REPLICAS, or add CPUs"
            )

    async def submit_search(self, request: TuneRequest, *, source: str = "api") -> str:
        """Validate, record and submit one hyperparameter search; returns its job id.
        Raises as `submit` does, and ClusterTooSmall when no trial could be placed."""
        space = self.check_search(request)
        uri, target = self.dataset(request.dataset_uri, request.target_column)
        await self.check_search_capacity()
        job_id = new_job_id("tune")
        spec = SearchSpec(
            job_id=job_id,
            search_space=space,
            trials=request.trials,
            metric=request.metric,
            dataset_uri=uri,
            target_column=target,
            max_concurrent_trials=request.max_concurrent_trials,
        )
        record = {
            "kind": "tune",
            "hyperparameters": {},
            "source": source,
            "dataset_uri": uri,
            "target_column": target,
            "search_space": space,
            "metric": request.metric,
            "trials_total": request.trials,
            "trials_finished": 0,
            "trials_failed": 0,
        }
        await self._launch(
            job_id,
            record=record,
            command=["python", "-m", "mlops.ml.search", "--spec", spec.as_json()],
        )
        log.info("submitted search %s from %s: %d trials on %s", job_id, source, spec.trials, uri)
        return job_id

    async def _launch(self, job_id: str, *, record: dict[str, Any], command: list[str]) -> None:
        """Admit (the limit of active jobs), record and submit a job to Ray. Its
        entrypoint reserves no CPU: it waits, and what it starts reserves its own."""
        await self._registry.health()
        limit = self._settings.max_active_trainings
        if not await self._jobs.create(job_id, fields=record, max_active=limit):
            raise TooManyTrainings(limit)
        try:
            await self._ray.submit(
                submission_id=job_id,
                entrypoint=shlex.join(command),
                env_vars={**self._settings.as_env(include_secrets=False), **_MLFLOW_CLIENT_ENV},
                metadata={"kind": record["kind"], "source": record["source"]},
                num_cpus=0,
            )
        except SubmissionUnconfirmed:
            # Our job id is Ray's submission id: if Ray took it, it is the job; if not,
            # the reconciler marks the record failed once the submit grace has passed.
            if await self._ray_has(job_id):
                log.warning("Ray confirmed job %s only when asked again", job_id)
                return
            raise SubmissionUnconfirmed(
                f"Ray did not confirm job {job_id}; its record is kept and reconciled with "
                f"Ray: see /jobs/{job_id}"
            ) from None
        except Exception:
            await self._jobs.delete(job_id)
            raise

    async def _ray_has(self, job_id: str) -> bool:
        try:
            return await self._ray.info(job_id) is not None
        except RayJobsError:
            return False

    async def recent(self, limit: int) -> list[JobInfo]:
        return [JobInfo.model_validate(record) for record in await self._jobs.recent(limit)]

    async def get(self, job_id: str) -> JobInfo | None:
        record = await self._jobs.get(job_id)
        return JobInfo.model_validate(record) if record else None

    async def totals(self) -> JobTotals:
        counts, durations = await self._jobs.totals()
        return JobTotals(counts, durations, DURATION_BUCKETS)

    async def reconcile_forever(self, background: Background) -> None:
        while background.running:
            try:
                await self.reconcile(limit=50)
            except (RayJobsError, RedisError, OSError) as exc:
                log.warning("job reconciliation skipped: %s", exc)
            await background.pause(self._settings.job_poll_seconds)

    async def reconcile(self, *, limit: int) -> None:
        """Bring unfinished job records in line with Ray, and alert on jobs that died.

        The training command records its own outcome; this catches what it cannot: a
        job that crashed before or outside our code (import error, killed worker, lost
        node). Any number of API replicas may run it: the final alert is claimed once
        per job.
        """
        for record in await self._jobs.recent(limit):
            if not JobStatus(record["status"]).is_terminal:
                await self._reconcile_one(record)

    async def _reconcile_one(self, record: dict[str, Any]) -> None:
        job_id = record["job_id"]
        info = await self._ray.info(job_id)
        if info is None:
            if _age_seconds(record["created_at"]) < _SUBMIT_GRACE_SECONDS:
                return  # submission may still be on its way to Ray
            ray_status = JobStatus.FAILED
            message: str | None = "Ray has no record of this job (cluster restarted?)"
        else:
            ray_status = _RAY_STATUS.get(info["status"], JobStatus.PENDING)
            message = info.get("message")
        limit = self._settings.job_max_seconds
        if not ray_status.is_terminal and _age_seconds(record["created_at"]) > limit:
            await self._ray.stop(job_id)
            ray_status = JobStatus.FAILED
            message = f"stopped after running longer than MLOPS_JOB_MAX_SECONDS={limit:g} s"
        if not ray_status.is_terminal:
            if ray_status is JobStatus.RUNNING and record["status"] == JobStatus.PENDING:
                await self._jobs.mark_running(job_id, _ray_time(info or {}, "start_time"))
            return
        fresh = await self._jobs.get(job_id) or {}
        if JobStatus(fresh.get("status", JobStatus.PENDING)).is_terminal:
            return  # the job recorded its own outcome meanwhile
        recovered = await recover_outcome(self._registry, self._settings, job_id)
        if recovered is not None:
            await self._record_recovered(job_id, recovered, _ran_seconds(info or {}))
            return
        error = message or f"job ended as {ray_status.value} without reporting a result"
        finished = _ray_time(info, "end_time") if info else datetime.now(UTC).isoformat()
        seconds = _ran_seconds(info or {})
        await self._jobs.finish(
            job_id, ray_status.value, seconds, error=error, finished_at=finished
        )
        log.warning("training job %s ended as %s: %s", job_id, ray_status.value, error)
        level: AlertLevel = "error" if ray_status is JobStatus.FAILED else "warning"
        await self._alerts.publish_for_job(
            job_id,
            level,
            f"Training job {job_id} {ray_status.value}: {error}",
            data={"job_id": job_id, "status": ray_status.value},
        )

    async def _record_recovered(
        self, job_id: str, recovered: RecoveredOutcome, seconds: float
    ) -> None:
        """What the job could not record itself, each part once (as the job would)."""
        fields = {k: v for k, v in recovered.fields.items() if k != "status"}
        await self._jobs.finish(job_id, recovered.fields["status"], seconds, **fields)
        if recovered.move is not None:
            await self._history.record_for_job(job_id, recovered.move)
        await self._alerts.publish_for_job(
            job_id, recovered.level, recovered.text, data={"job_id": job_id, **fields}
        )
        log.warning("training job %s: outcome recovered from MLflow", job_id)


def _ran_seconds(info: dict[str, Any]) -> float:
    """From Ray's start to its end (now, for a job being stopped), in seconds."""
    started = info.get("start_time") or info.get("end_time")
    if not started:
        return 0.0
    ended = info.get("end_time") or datetime.now(UTC).timestamp() * 1000
    return (ended - started) / 1000


def _age_seconds(iso_time: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(iso_time)).total_seconds()


def _ray_time(info: dict[str, Any], key: str) -> str:
    value = info.get(key)
    moment = datetime.fromtimestamp(value / 1000, tz=UTC) if value else datetime.now(UTC)
    return moment.isoformat()
