"""The warm trainer: a long-lived Ray actor that runs every training job's work.

A training job is still a Ray job (the Ray dashboard lists each one), but its
entrypoint (`python -m mlops.ml.job`) imports only Ray and hands the work to this actor,
which has scikit-learn, pandas and MLflow imported already and keeps recent champions
loaded. That removes the 5 s of imports a fresh process pays (bench/training.py).

One actor per tracking server and version of this code (`actor_name`), detached so it
outlives the job that started it, with a thread per concurrent job. It reserves no CPU
(a job waiting on it reserves none either): the CPUs of a fit are reserved by the Ray
workers that build its trees (`model.fit`). It reserves memory (MLOPS_TRAINER_MEMORY_MB)
and runs only on a node that offers the `trainer` resource: in the cluster the worker
group, never the head with Ray's control processes (helm-values/ray-cluster.yaml);
locally the one node (`make up` starts it so).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

import ray

from mlops.contracts.placement import TRAINER_RESOURCE, on_trainer_nodes

log = logging.getLogger("mlops.trainer")

NAMESPACE = "mlops"


class NoTrainerNode(RuntimeError):
    """No Ray node offers the trainer's resource: the trainer could never be placed."""


# More than MLOPS_MAX_ACTIVE_TRAININGS's default: jobs beyond it wait in Ray, not here.
MAX_CONCURRENT_JOBS = 16


def actor_name(tracking_uri: str) -> str:
    """Named by the tracking server (MLflow's tracking URI is per process) and by a
    digest of this package's code, so a changed package gets a fresh actor."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(tracking_uri.encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    return f"trainer-{digest.hexdigest()[:16]}"


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
    def __init__(self, log_format: str) -> None:
        from mlops import logs
        from mlops.ml import execute, promotion, train

        logs.configure("text" if log_format == "text" else "json")
        root = logging.getLogger()
        self._logs = JobLogs(root.handlers[0].formatter if root.handlers else None)
        root.addHandler(self._logs)
        train.warm_up()
        self._execute = execute
        self._champions = promotion.ChampionCache()
        log.info("trainer ready")

    def run(self, env: dict[str, str], spec_json: str) -> int:
        """Run one job with the settings its MLOPS_* variables give; its exit code."""
        from mlops import logs
        from mlops.ml.specs import TrainingSpec
        from mlops.settings.training import TrainingSettings

        spec = TrainingSpec.from_json(spec_json)
        logs.job_id.set(spec.job_id)
        self._logs.open(spec.job_id)
        settings = TrainingSettings.from_env(env)
        log.info("job %s: started in the trainer", spec.job_id)
        # The trainer wires the recorder: the training knows only its contract.
        from mlops.clients.redis.recorder import JobRecorder

        return self._execute.training(settings, spec, JobRecorder(settings), self._champions)

    def log_lines(self, job_id: str, last: bool = False) -> list[str]:
        """A job's new log lines (its entrypoint prints them into the job's log)."""
        return self._logs.take(job_id, close=last)


def get_or_start(tracking_uri: str, log_format: str, memory_mb: int) -> Any:
    """The trainer for this tracking server, started if none is running."""
    if not ray.cluster_resources().get(TRAINER_RESOURCE):
        raise NoTrainerNode(
            f"no Ray node offers the {TRAINER_RESOURCE!r} resource the trainer runs on: "
            f"start one with --resources '{{\"{TRAINER_RESOURCE}\": 1}}' (the cluster's "
            "worker group has it, helm-values/ray-cluster.yaml)"
        )
    return (
        ray.remote(Trainer)
        .options(
            name=actor_name(tracking_uri),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            memory=memory_mb * 1024 * 1024,
            resources=on_trainer_nodes(),
            max_concurrency=MAX_CONCURRENT_JOBS,
        )
        .remote(log_format)
    )
