"""The warm trainer: a long-lived Ray actor that runs every training job's work.

A training job is still a Ray job (the Ray dashboard lists each one), but its
entrypoint (`python -m mlops.ml.job`) imports only Ray and hands the work to this actor,
which has scikit-learn, pandas and MLflow imported already and keeps recent champions
loaded. That removes the 5 s of imports a fresh process pays (bench/training.py).

One actor per tracking server and version of this code (`actor_name`), detached so it
outlives the job that started it, with a thread per concurrent job. It reserves no CPU
(a job waiting on it reserves none either): the CPUs of a fit are reserved by the Ray
workers that build its trees (`model.fit`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import ray

log = logging.getLogger("mlops.trainer")

NAMESPACE = "mlops"
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


class Trainer:
    def __init__(self, log_format: str) -> None:
        from mlops import logs
        from mlops.ml import promotion, train

        logs.configure("text" if log_format == "text" else "json")
        train.warm_up()
        self._train = train
        self._champions = promotion.ChampionCache()
        log.info("trainer ready")

    def run(self, env: dict[str, str], spec_json: str) -> tuple[int, str]:
        """Run one job with the settings its MLOPS_* variables give; (exit code, summary)."""
        from mlops import logs
        from mlops.ml.specs import TrainingSpec
        from mlops.settings import Settings

        spec = TrainingSpec.from_json(spec_json)
        logs.job_id.set(spec.job_id)
        settings = Settings.from_env(env)
        log.info("job %s: started in the trainer", spec.job_id)
        code = self._train.run(settings, spec, self._champions)
        return code, f"job {spec.job_id} {'succeeded' if code == 0 else 'failed'}"


def get_or_start(tracking_uri: str, log_format: str) -> Any:
    """The trainer for this tracking server, started if none is running."""
    return (
        ray.remote(Trainer)
        .options(
            name=actor_name(tracking_uri),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=MAX_CONCURRENT_JOBS,
        )
        .remote(log_format)
    )
