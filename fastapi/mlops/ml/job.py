"""The entrypoint of a training job, as Ray's Jobs API runs it:

    python -m mlops.ml.job --spec '{"job_id": "train-…", "hyperparameters": {…}, …}'

It imports only Ray, then runs the job in the warm trainer (`mlops.ml.trainer`), started
by the first job that needs it. The job's MLOPS_* variables (its runtime environment)
go with the call, so each job trains with the settings of the API that submitted it.
With MLOPS_WARM_TRAINER=false the job runs in this process instead, as a fresh one.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import ray

from mlops.ml import trainer
from mlops.settings.training import TrainingSettings

LOG_POLL_SECONDS = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the job as JSON (ml.specs.TrainingSpec)")
    args = parser.parse_args(argv)
    settings = TrainingSettings()
    if not settings.warm_trainer:
        return _in_this_process(settings, args.spec)
    ray.init(namespace=trainer.NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    try:
        worker = trainer.get_or_start(
            settings.mlflow_tracking_uri, settings.log_format, settings.trainer_memory_mb
        )
    except trainer.NoTrainerNode as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    # Secrets stay out of the call: the trainer reads them from its node's environment.
    env = settings.as_env(include_secrets=False)
    job_id = json.loads(args.spec)["job_id"]
    running = worker.run.remote(env, args.spec)
    done: list = []
    while not done:  # the job's log lines, as the trainer logs them
        done, _ = ray.wait([running], timeout=LOG_POLL_SECONDS)
        _print(ray.get(worker.log_lines.remote(job_id, last=bool(done))))
    code: int = ray.get(running)
    return code


def _print(lines: list[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _in_this_process(settings: TrainingSettings, spec_json: str) -> int:
    """MLOPS_WARM_TRAINER=false: the whole job in this fresh process, imports included."""
    from mlops import logs
    from mlops.clients.redis.recorder import JobRecorder
    from mlops.ml import execute
    from mlops.ml.specs import TrainingSpec

    spec = TrainingSpec.from_json(spec_json)
    logs.job_id.set(spec.job_id)
    logs.configure(settings.log_format)
    ray.init(logging_level=logging.WARNING)  # a parallel fit's workers are Ray's
    return execute.training(settings, spec, JobRecorder(settings))


if __name__ == "__main__":
    sys.exit(main())
