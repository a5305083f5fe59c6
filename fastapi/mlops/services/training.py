"""Submitting training jobs to Ray and keeping their records true to what Ray says."""

from __future__ import annotations

import logging
import shlex
import uuid
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.dataset_headers import DatasetHeaders, HeaderUnreadable
from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.ray_jobs import RayJobsClient, RayJobsError, SubmissionUnconfirmed
from mlops.clients.redis import JobStore
from mlops.clients.redis.keys import DURATION_BUCKETS
from mlops.clients.redis.trainer_queue import TrainerQueue
from mlops.contracts.jobs import JobInfo, NewJob
from mlops.contracts.model_definition import METRICS, Metric, ModelDefinition
from mlops.contracts.placement import SERVING_RESOURCE, TRAINER_RESOURCE
from mlops.contracts.trainer import TRAINER_ENV, QueuedJob, trainer_name
from mlops.ml import search_space
from mlops.ml.data import DatasetLocationError, check_location, dataset_format
from mlops.ml.estimators import Family, InvalidField
from mlops.ml.specs import SearchSpec, TrainingSpec
from mlops.retry import backoff
from mlops.schemas import TuneRequest
from mlops.services.job_records import MalformedJob, UnknownJob, parse_job
from mlops.services.model_catalog import checked_hyperparameters
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
        headers: DatasetHeaders,
        trainer_queue: TrainerQueue,
    ) -> None:
        self._settings = settings
        self._ray = ray
        self._jobs = jobs
        self._registry = registry
        self._headers = headers
        self._trainer_queue = trainer_queue
        self._trainer = trainer_name(settings.mlflow_tracking_uri)

    async def dataset(
        self, model: ModelDefinition, uri: str | None, target: str | None
    ) -> tuple[str, str]:
        """(dataset URI, target column) of a request for `model`: its own unless given; a
        given URI must be inside the allowed locations, in a format the platform reads
        and have the model's columns, and the target is the model's (InvalidField if
        not; StorageUnavailable when S3 does not answer)."""
        spec = model.spec
        if target is not None and target != spec.target_column:
            raise InvalidField(
                ("target_column",),
                f"{model.name} predicts {spec.target_column!r}: to train it on another "
                f"target, change the model (PATCH /models/{model.name}) or create another "
                "(POST /models)",
            )
        if uri is None:
            return spec.dataset_uri, spec.target_column
        try:
            checked = check_location(uri, self._settings.dataset_locations)
        except DatasetLocationError as exc:
            raise InvalidField(("dataset_uri",), str(exc)) from exc
        if checked != spec.dataset_uri:
            await self._check_same_columns(model, checked)
        return checked, spec.target_column

    async def _check_same_columns(self, model: ModelDefinition, uri: str) -> None:
        """Another dataset trains the model only with its features, in its order, and
        its target: anything else is another model (its versions would be compared with
        and served in place of the champion)."""
        spec = model.spec
        try:
            given = await self._headers.columns(uri, dataset_format(uri))
        except HeaderUnreadable as exc:
            raise InvalidField(("dataset_uri",), str(exc)) from exc
        try:
            own = await self._headers.columns(spec.dataset_uri, dataset_format(spec.dataset_uri))
        except HeaderUnreadable as exc:  # the model's own data is gone: its job tells
            log.warning("%s: cannot compare with its own dataset: %s", model.name, exc)
            return
        if given == own:
            return
        features = [column for column in own if column != spec.target_column]
        if spec.target_column not in given:
            problem = f"has no column {spec.target_column!r}, the target of {model.name}"
        elif set(given) == set(own):
            problem = f"has {model.name}'s features in another order ({', '.join(given)})"
        else:
            parts = []
            if extra := sorted(set(given) - set(own)):
                parts.append(f"not in {model.name}: {', '.join(extra)}")
            if missing := sorted(set(features) - set(given)):
                parts.append(f"missing: {', '.join(missing)}")
            problem = "has other features: " + "; ".join(parts)
        raise InvalidField(
            ("dataset_uri",),
            f"{uri} {problem}. {model.name} is trained on {', '.join(features)} to predict "
            f"{spec.target_column!r}: to train it on this dataset, change the model "
            f"(PATCH /models/{model.name} with this dataset_uri) or create another model "
            "(POST /models)",
        )

    def check_hyperparameters(
        self, model: ModelDefinition, hyperparameters: dict[str, Any]
    ) -> dict[str, Any]:
        """The model's default hyperparameters with the request's over them, checked
        against its estimator (HyperparameterError names the key)."""
        merged = {**model.spec.hyperparameters, **hyperparameters}
        return checked_hyperparameters(self._settings, model.spec, merged)

    def check_search(
        self, model: ModelDefinition, request: TuneRequest
    ) -> tuple[dict[str, Any], Metric]:
        """The request's search space, checked with its trial count, and the metric that
        picks the best trial (default: the model's gate metric)."""
        settings = self._settings
        if request.trials > settings.tune_max_trials:
            raise InvalidField(
                ("trials",),
                f"'trials' must be ≤ {settings.tune_max_trials} (MLOPS_TUNE_MAX_TRIALS)",
            )
        metric = request.metric or model.spec.gate.metric
        if metric not in METRICS[model.spec.task]:
            choices = ", ".join(METRICS[model.spec.task])
            raise InvalidField(("metric",), f"{model.name} is {model.spec.task}: use {choices}")
        space = search_space.validate(
            request.search_space,
            Family.of(model.spec),
            max_size=settings.max_n_estimators,
            max_depth_limit=settings.max_depth_limit,
        )
        return space, metric

    async def submit(
        self,
        model: ModelDefinition,
        hyperparameters: dict[str, Any],
        *,
        dataset_uri: str | None = None,
        target_column: str | None = None,
        source: str = "api",
        promote: bool = True,
    ) -> str:
        """Validate, record and submit one training job of `model`; returns its id.
        With `promote` False, a version that passes the gate is left for a rollout.

        Raises InvalidField, MlflowUnavailable (a job could not register its model) or
        TooManyTrainings before anything is created, and RayJobsError (after removing
        the record) when Ray does not take the job.
        """
        checked = self.check_hyperparameters(model, hyperparameters)
        uri, target = await self.dataset(model, dataset_uri, target_column)
        job_id = new_job_id()
        spec = TrainingSpec(
            job_id=job_id,
            model=model.ref(),
            hyperparameters=checked,
            dataset_uri=uri,
            target_column=target,
            promote=promote,
        )
        record: NewJob = {
            "kind": "training",
            "model": model.name,
            "hyperparameters": checked,
            "source": source,
            "dataset_uri": uri,
            "target_column": target,
        }
        env = await self._launch(
            job_id,
            record=record,
            command=self._job_command("mlops.ml.job", "--spec", spec.as_json()),
        )
        if self._settings.warm_trainer:
            await self._hand_over(QueuedJob(job_id=job_id, env=env, spec=spec.as_json()))
        log.info(
            "submitted training job %s of %s from %s with %s on %s",
            job_id, model.name, source, checked, uri,
        )  # fmt: skip
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

    async def submit_search(
        self, model: ModelDefinition, request: TuneRequest, *, source: str = "api"
    ) -> str:
        """Validate, record and submit one hyperparameter search of `model`; returns its
        job id. Raises as `submit` does, and ClusterTooSmall when no trial could be placed."""
        space, metric = self.check_search(model, request)
        uri, target = await self.dataset(model, request.dataset_uri, request.target_column)
        await self.check_search_capacity()
        job_id = new_job_id("tune")
        spec = SearchSpec(
            job_id=job_id,
            model=model.ref(),
            search_space=space,
            trials=request.trials,
            metric=metric,
            fixed=model.spec.hyperparameters,
            dataset_uri=uri,
            target_column=target,
            max_concurrent_trials=request.max_concurrent_trials,
        )
        record: NewJob = {
            "kind": "tune",
            "model": model.name,
            "hyperparameters": {},
            "source": source,
            "dataset_uri": uri,
            "target_column": target,
            "search_space": space,
            "metric": metric,
            "trials_total": request.trials,
            "trials_finished": 0,
            "trials_failed": 0,
        }
        command = self._job_command("mlops.ml.job", "--kind", "tune", "--spec", spec.as_json())
        env = await self._launch(job_id, record=record, command=command)
        if self._settings.warm_trainer:
            queued = QueuedJob(job_id=job_id, env=env, spec=spec.as_json(), kind="tune")
            await self._hand_over(queued)
        log.info("submitted search %s from %s: %d trials on %s", job_id, source, spec.trials, uri)
        return job_id

    async def _launch(self, job_id: str, *, record: NewJob, command: list[str]) -> dict[str, str]:
        """Admit (the limit of active jobs), record and submit a job to Ray; the job's
        environment. Its entrypoint reserves no CPU: it waits, and what it starts
        reserves its own."""
        await self._registry.health()
        limit = self._settings.max_active_trainings
        created = await self._jobs.create(
            job_id, model=record["model"], fields=record, max_active=limit
        )
        if not created:
            raise TooManyTrainings(limit)
        env = self._job_env()
        try:
            await self._ray.submit(
                submission_id=job_id,
                entrypoint=shlex.join(command),
                env_vars=env,
                metadata={"kind": record["kind"], "source": record["source"]},
                num_cpus=0,
                python=self._job_python(),
            )
        except SubmissionUnconfirmed:
            # Our job id is Ray's submission id: if Ray took it, it is the job; if not,
            # the reconciler marks the record failed once the submit grace has passed.
            if await self._ray_has(job_id):
                log.warning("Ray confirmed job %s only when asked again", job_id)
                return env
            raise SubmissionUnconfirmed(
                f"Ray did not confirm job {job_id}; its record is kept and reconciled with "
                f"Ray: see /jobs/{job_id}"
            ) from None
        except Exception:
            await self._jobs.delete(job_id, record["model"])
            raise
        await self._jobs.note(job_id, {"accepted_at": datetime.now(UTC).isoformat()})
        return env

    async def keep_trainer_warm(self, background: Background) -> None:
        """Start the warm trainer now, through a Ray job of its own (retried until Ray
        takes it), rather than with the first training; then nothing more to do."""
        async for attempt in backoff(
            on=(RayJobsError,),
            first=1.0,
            cap=30.0,
            stop_when=lambda: not background.running,
            sleep=background.pause,
            what="starting the warm trainer",
        ):
            with attempt:
                await self._ray.submit(
                    submission_id=new_job_id("warm-up"),
                    entrypoint=shlex.join(self._job_command("mlops.ml.job", "--warm-up")),
                    env_vars=self._job_env(),
                    metadata={"kind": "warm-up", "source": "api"},
                    num_cpus=0,
                    python=self._job_python(),
                )
        background.completed_round()
        while background.running:
            await background.pause(3600)

    def _job_command(self, module: str, *args: str) -> list[str]:
        """A job's entrypoint. Ray's supervisor actor starts it as its child, so at the
        supervisor's niceness (`_job_python`): importing Ray and connecting (about a
        second of CPU a job) yield to serving from the start."""
        return ["python", "-m", module, *args]

    def _job_python(self) -> str:
        """What starts a job's Ray worker processes: the training niceness from their
        first instruction. Ray starts each job's supervisor actor at niceness 0,
        whatever its settings (about a CPU-second a job, before anything of the job
        runs); under `nice` it yields to serving, and so does the entrypoint it starts.
        So do the trainer and a search's trials, which the warm-up job starts."""
        return f"nice -n {self._settings.training_niceness} python"

    def _job_env(self) -> dict[str, str]:
        """A job's runtime environment: the settings it reads, no secret, and the
        trainer its work is handed to."""
        return {
            **self._settings.as_env(include_secrets=False, runtime=TrainingSettings),
            **_MLFLOW_CLIENT_ENV,
            TRAINER_ENV: self._trainer,
        }

    async def _hand_over(self, job: QueuedJob) -> None:
        """Give the warm trainer the job now, rather than when Ray has launched its
        entrypoint. Only a head start: unread, the entrypoint starts it."""
        try:
            await self._trainer_queue.push(self._trainer, job)
        except (RedisError, OSError) as exc:
            log.warning("job %s starts when Ray launches it: %s", job.job_id, exc)

    async def _ray_has(self, job_id: str) -> bool:
        try:
            return await self._ray.info(job_id) is not None
        except RayJobsError:
            return False

    async def recent(self, limit: int, *, model: str | None = None) -> list[JobInfo]:
        """The newest records, newest first (with `model`, that model's); one that does
        not parse is left out (the reconciler moves it to the quarantine if it is still
        active)."""
        jobs = []
        for job_id, raw in (await self._jobs.recent(limit, model=model)).items():
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
