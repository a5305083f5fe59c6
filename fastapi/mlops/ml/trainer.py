"""The warm trainer: a long-lived Ray actor that runs every training and search job's
work.

A training job is still a Ray job (the Ray dashboard lists each one, its log shows the
training, its exit code is the training's), but its work runs in this actor, which has
scikit-learn, pandas, MLflow and Ray Tune imported already and keeps recent champions
loaded: that removes the 5 s of imports a fresh process pays (bench/training.py). It
also keeps the Ray actors that build a large forest's trees between fits
(ml/tree_builders.py). A search's Tune driver runs here too, in the job's thread; its
trials are Tune's own actors.

The work starts as soon as Ray has accepted the job: the API hands the job over
through Redis (`contracts/trainer.py`) and the actor's queue reader starts it. The
job's entrypoint (`python -m mlops.ml.job`), which Ray launches a second or more later,
attaches to that work, or starts it here itself when nobody took it from the queue (the
first job, which starts the actor; a queue reader cut from Redis). Either way the work
is claimed once on the job's record.

One actor per tracking server and version of the API's code (`trainer_name`; the API
names it in each job's environment), detached so it outlives the job that started it,
with a thread per concurrent job. It reserves no CPU (a job waiting on it reserves none
either): the CPUs of a parallel fit are reserved by the tree builders (`model.fit`). It
reserves memory (MLOPS_TRAINER_MEMORY_MB) and runs only on a node that offers the
`trainer` resource: in the cluster the worker group, never the head with Ray's control
processes (helm-values/ray-cluster.yaml); locally the one node (`make up` starts it so).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import ray

from mlops.contracts.jobs import JobKind
from mlops.contracts.placement import TRAINER_RESOURCE, on_trainer_nodes
from mlops.contracts.trainer import NAMESPACE, TRAINER_ENV, QueuedJob, trainer_name

log = logging.getLogger("mlops.trainer")


class NoTrainerNode(RuntimeError):
    """No Ray node offers the trainer's resource: the trainer could never be placed."""


# More than MLOPS_MAX_ACTIVE_TRAININGS's default: jobs beyond it wait in Ray, not here.
MAX_CONCURRENT_JOBS = 16
# Jobs whose outcome and log lines are kept for their entrypoint to attach to.
JOBS_KEPT = 256
QUEUE_WAIT_S = 5.0  # a blocking read of the queue (under the Redis client's timeout)
QUEUE_RETRY_S = 5.0  # after Redis refused a read


class JobLogs(logging.Handler):
    """Each running job's log lines, formatted as the process formats them, kept until
    its entrypoint has read them: the job's log in Ray shows its training, live."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self._lines: dict[str, list[str]] = {}
        self._guard = threading.Lock()

    def open(self, job_id: str) -> None:
        with self._guard:
            self._lines[job_id] = []
            while len(self._lines) > JOBS_KEPT:  # jobs whose entrypoint never read them
                self._lines.pop(next(iter(self._lines)))

    def emit(self, record: logging.LogRecord) -> None:
        from mlops import logs

        job_id = logs.job_id.get()
        with self._guard:
            lines = self._lines.get(job_id) if job_id else None
            if lines is not None:
                lines.append(self.format(record))

    def take(self, job_id: str, *, close: bool = False) -> list[str]:
        """The lines logged since the last call; with `close`, the last of them."""
        with self._guard:
            lines = self._lines.pop(job_id, []) if close else self._lines.get(job_id, [])
            if not close and job_id in self._lines:
                self._lines[job_id] = []
        return lines


class Trainer:
    def __init__(self, log_format: str, env: dict[str, str]) -> None:
        from mlops import logs
        from mlops.ml import execute, promotion, search, train
        from mlops.ml.niceness import yield_to_serving
        from mlops.ml.tree_builders import TreeBuilders
        from mlops.settings.training import TrainingSettings

        settings = TrainingSettings.from_env(env)
        yield_to_serving(settings.training_niceness)
        logs.configure("text" if log_format == "text" else "json")
        root = logging.getLogger()
        self._logs = JobLogs(root.handlers[0].formatter if root.handlers else None)
        root.addHandler(self._logs)
        train.warm_up()
        search.register_trial()  # before any job's thread runs a search
        self._execute, self._search = execute, search
        self._champions = promotion.ChampionCache()
        self._builders = TreeBuilders(
            idle_seconds=settings.tree_builders_idle_seconds, niceness=settings.training_niceness
        )
        self._pool = ThreadPoolExecutor(MAX_CONCURRENT_JOBS, thread_name_prefix="job")
        self._jobs: OrderedDict[str, Future[int]] = OrderedDict()
        self._stopped: set[str] = set()
        self._guard = threading.Lock()
        # A thread of its own with its own event loop: an `async def` method would make
        # this an asyncio actor, whose sync methods run on the loop's thread.
        name = ray.get_runtime_context().get_actor_name() or ""
        reader = threading.Thread(
            target=asyncio.run, args=(_read_queue(settings, name, self._start),), daemon=True
        )
        reader.start()
        log.info("trainer ready")

    def attach(self, env: dict[str, str], spec_json: str, kind: JobKind = "training") -> int:
        """The job's exit code once its work ends: the work started from the queue, or
        started now. 1 when its work was claimed but is not running here (the trainer
        restarted while it ran)."""
        job_id = json.loads(spec_json)["job_id"]
        future = self._start(QueuedJob(job_id=job_id, env=env, spec=spec_json, kind=kind))
        if future is None:
            self._log_to_job(
                job_id,
                "its work was claimed by another trainer, or by this one before it restarted",
            )
            return 1
        return future.result()

    def _log_to_job(self, job_id: str, message: str) -> None:
        """An error in the job's own log (its entrypoint prints it; Ray's job status
        and the job's record then carry it), besides the trainer's."""
        from mlops import logs

        self._logs.open(job_id)
        token = logs.job_id.set(job_id)
        try:
            log.error("job %s: %s", job_id, message)
        finally:
            logs.job_id.reset(token)

    def stop(self, job_id: str) -> None:
        """The job was stopped in Ray (its entrypoint got SIGTERM): its work ends at its
        next phase."""
        with self._guard:
            self._stopped.add(job_id)
        log.warning("job %s: stopped in Ray", job_id)

    def ready(self) -> bool:
        """True once started (its imports done and its first fit, save and load run)."""
        return True

    def log_lines(self, job_id: str, last: bool = False) -> list[str]:
        """A job's new log lines (its entrypoint prints them into the job's log)."""
        return self._logs.take(job_id, close=last)

    def _start(self, job: QueuedJob) -> Future[int] | None:
        """The job's work here: running or done already, else claimed and started now;
        None when it was claimed elsewhere."""
        from mlops.clients.redis.recorder import JobRecorder
        from mlops.settings.training import TrainingSettings

        with self._guard:
            if (found := self._jobs.get(job.job_id)) is not None:
                return found
            recorder = JobRecorder(TrainingSettings.from_env(job.env))
            if not recorder.claim(job.job_id):
                return None
            self._logs.open(job.job_id)
            future = self._pool.submit(self._run, job, recorder)
            self._jobs[job.job_id] = future
            while len(self._jobs) > JOBS_KEPT:
                self._jobs.popitem(last=False)
        return future

    def _run(self, job: QueuedJob, recorder: Any) -> int:
        """Run one job with the settings its MLOPS_* variables give; its exit code."""
        from mlops import logs
        from mlops.ml.specs import SearchSpec, TrainingSpec
        from mlops.settings.training import TrainingSettings

        job_id = job.job_id
        logs.job_id.set(job_id)
        settings = TrainingSettings.from_env(job.env)
        log.info("job %s: started in the trainer", job_id)
        # Stopped by its entrypoint's word, or, when the stop came before the entrypoint
        # could pass it on (the work starts from the queue first), by its record's.
        stopped = lambda: job_id in self._stopped or recorder.ended(job_id)  # noqa: E731
        try:
            if job.kind == "tune":
                search = SearchSpec.from_json(job.spec)
                return self._search.job(settings, search, recorder, self._champions, stopped)
            spec = TrainingSpec.from_json(job.spec)
            return self._execute.training(
                settings, spec, recorder, self._champions, stopped, self._builders
            )
        finally:
            with self._guard:
                self._stopped.discard(job_id)


async def _read_queue(settings: Any, name: str, start: Callable[[QueuedJob], object]) -> None:
    """Start each job the API queues for this trainer (by its name), as it comes."""
    from redis.exceptions import RedisError

    from mlops.clients.redis.connection import connect
    from mlops.clients.redis.trainer_queue import TrainerQueue

    queue = TrainerQueue(connect(settings, max_connections=1))
    while True:
        try:
            job = await queue.take(name, timeout_s=QUEUE_WAIT_S)
        except (RedisError, OSError) as exc:
            log.warning("trainer queue unreadable (%s); jobs start from Ray meanwhile", exc)
            await asyncio.sleep(QUEUE_RETRY_S)
            continue
        if job is not None:
            await asyncio.to_thread(start, job)


def get_or_start(env: dict[str, str], settings: Any) -> Any:
    """The trainer the API handed the job to (TRAINER_ENV), else the one this code
    names for its tracking server; started if it is not running."""
    if not ray.cluster_resources().get(TRAINER_RESOURCE):
        raise NoTrainerNode(
            f"no Ray node offers the {TRAINER_RESOURCE!r} resource the trainer runs on: "
            f"start one with --resources '{{\"{TRAINER_RESOURCE}\": 1}}' (the cluster's "
            "worker group has it, helm-values/ray-cluster.yaml)"
        )
    return (
        ray.remote(Trainer)
        .options(
            name=os.environ.get(TRAINER_ENV) or trainer_name(settings.mlflow_tracking_uri),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            memory=settings.trainer_memory_mb * 1024 * 1024,
            resources=on_trainer_nodes(),
            # Each job's entrypoint holds a thread (attach) while it waits for the work:
            # room for as many again (log lines, stop) and the warm-up.
            max_concurrency=2 * MAX_CONCURRENT_JOBS + 4,
        )
        .remote(settings.log_format, env)
    )
