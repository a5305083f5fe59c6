"""Submitting training jobs to Ray and keeping their records true to what Ray says."""

from __future__ import annotations

import logging
import shlex
import uuid
from typing import Any

from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.ray_jobs import RayJobsClient, RayJobsError, SubmissionUnconfirmed
from mlops.clients.redis import JobStore
from mlops.clients.redis.keys import DURATION_BUCKETS
from mlops.contracts.jobs import JobInfo, NewJob
from mlops.contracts.placement import SERVING_RESOURCE, TRAINER_RESOURCE
from mlops.ml import search_space
from mlops.ml.data import DatasetLocationError, check_location
from mlops.ml.model import InvalidField, validate_hyperparameters
from mlops.ml.specs import SearchSpec, TrainingSpec
from mlops.schemas import TuneRequest
from mlops.services.job_records import MalformedJob, UnknownJob, parse_job
from mlops.settings.api import ApiSettings
from mlops.settings.training import TrainingSettings
from mlops.telemetry import JobTotals

log = logging.getLogger(__name__)

# MLflow's client retries for minutes by default; a job should fail while someone waits.
_MLFLOW_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}

# What a search's trial reserves (mlops.ml.search).
TRIAL_CPUS = 1.0


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
    """Training jobs and searches: admitted, recorded in Redis and submitted to Ray
    (services/job_reconciler.py keeps the records true to what Ray says)."""

    def __init__(
        self,
        *,
        settings: ApiSettings,
        ray: RayJobsClient,
        jobs: JobStore,
        registry: MlflowRegistry,
    ) -> None:
        self._settings = settings
        self._ray = ray
        self._jobs = jobs
        self._registry = registry

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
        record: NewJob = {
            "kind": "training",
            "hyperparameters": checked,
            "source": source,
            "dataset_uri": uri,
            "target_column": target,
        }
        await self._launch(
            job_id,
            record=record,
            command=["python", "-m", "mlops.ml.job", "--spec", spec.as_json()],
        )
        log.info("submitted training job %s from %s with %s on %s", job_id, source, checked, uri)
        return job_id

    async def check_search_capacity(self) -> None:
        """Raise ClusterTooSmall when no trial could ever start: each needs one CPU of a
        trainer node that Serve's replicas do not hold (Tune would otherwise wait for
        ever, keeping its admission slot). Replicas hold CPUs there only where a node is
        both kinds (`make up`'s one node); the cluster's serving nodes are apart."""
        settings = self._settings
        trainer_nodes = [n for n in await self._ray.node_resources() if n.get(TRAINER_RESOURCE)]
        total = sum(node.get("CPU", 0.0) for node in trainer_nodes)
        shared = any(node.get(SERVING_RESOURCE) for node in trainer_nodes)
        held = settings.serve_replicas * settings.serve_replica_cpus if shared else 0.0
        if total - held < TRIAL_CPUS:
            raise ClusterTooSmall(
                f"a search runs each trial on {TRIAL_CPUS:g} CPU of a trainer node; those "
                f"have {total:g} CPUs and Serve's {settings.serve_replicas} replicas hold "
                f"{held:g} of them ({settings.serve_replica_cpus:g} each), leaving "
                f"{max(total - held, 0):g}: lower MLOPS_SERVE_REPLICA_CPUS or "
                "MLOPS_SERVE_REPLICAS, or add trainer nodes"
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
        record: NewJob = {
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

    async def _launch(self, job_id: str, *, record: NewJob, command: list[str]) -> None:
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
                env_vars={
                    **self._settings.as_env(include_secrets=False, runtime=TrainingSettings),
                    **_MLFLOW_CLIENT_ENV,
                },
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
        """The newest records, newest first; one that does not parse is left out (the
        reconciler moves it to the quarantine if it is still active)."""
        jobs = []
        for job_id, raw in (await self._jobs.recent(limit)).items():
            try:
                jobs.append(parse_job(raw))
            except MalformedJob as exc:
                log.debug("job record %s left out of the list: %s", job_id, exc)
        return jobs

    async def get(self, job_id: str) -> JobInfo:
        """The job's record; UnknownJob if there is none, MalformedJob if it does not
        parse."""
        raw = await self._jobs.get(job_id)
        if raw is None:
            raise UnknownJob(job_id)
        return parse_job(raw)

    async def totals(self) -> JobTotals:
        counts, durations = await self._jobs.totals()
        return JobTotals(counts, durations, DURATION_BUCKETS)
