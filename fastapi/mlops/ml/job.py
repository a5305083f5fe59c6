"""The entrypoint of a training or search job, as Ray's Jobs API runs it:

    python -m mlops.ml.job --spec '{"job_id": "train-…", "hyperparameters": {…}, …}'
    python -m mlops.ml.job --kind tune --spec '{"job_id": "tune-…", "search_space": {…}, …}'

It imports only Ray, then attaches to the job's work in the warm trainer
(`mlops.ml.trainer`), which the API's hand-over through Redis has usually started
already; the first job starts the trainer and its work there. The job's MLOPS_*
variables (its runtime environment) go with the call, so each job trains with the
settings of the API that submitted it.
With MLOPS_WARM_TRAINER=false the job runs in this process instead, as a fresh one.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any, get_args

from mlops.contracts.jobs import JobKind
from mlops.ml.niceness import yield_to_serving
from mlops.settings.training import TrainingSettings

LOG_POLL_SECONDS = 0.5
STOP_WAIT_S = 2.0  # Ray kills the process a few seconds after its SIGTERM


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--spec", help="the job as JSON (ml.specs.TrainingSpec, or SearchSpec with --kind tune)"
    )
    given.add_argument(
        "--warm-up", action="store_true", help="start the trainer, ready for the first job"
    )
    parser.add_argument("--kind", choices=get_args(JobKind), default="training")
    args = parser.parse_args(argv)
    settings = TrainingSettings()
    # Before Ray's import, which costs this process the most CPU.
    yield_to_serving(settings.training_niceness)
    if not settings.warm_trainer:
        return 0 if args.warm_up else _in_this_process(settings, args.spec, args.kind)
    import ray

    from mlops.contracts.trainer import NAMESPACE
    from mlops.ml import trainer

    ray.init(namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    # Secrets stay out of the call: the trainer reads them from its node's environment.
    env = settings.as_env(include_secrets=False)
    try:
        worker = trainer.get_or_start(env, settings)
    except trainer.NoTrainerNode as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if args.warm_up:
        return 0 if ray.get(worker.ready.remote()) else 1
    job_id = json.loads(args.spec)["job_id"]
    running = worker.attach.remote(env, args.spec, args.kind)
    _stop_with_this_process(worker, job_id)
    done: list = []
    while not done:  # the job's log lines, as the trainer logs them
        done, _ = ray.wait([running], timeout=LOG_POLL_SECONDS)
        _print(ray.get(worker.log_lines.remote(job_id, last=bool(done))))
    code: int = ray.get(running)
    return code


def _stop_with_this_process(worker: Any, job_id: str) -> None:
    """`ray job stop` (and the API's time limit) end this process with SIGTERM: the
    work in the trainer then stops too, before its next phase (a search's trials within
    seconds). Should this word not get through, the work reads its record's status."""

    import ray

    def stop(signum: int, _frame: Any) -> None:
        try:
            ray.get(worker.stop.remote(job_id), timeout=STOP_WAIT_S)
        finally:
            sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _print(lines: list[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _in_this_process(settings: TrainingSettings, spec_json: str, kind: JobKind) -> int:
    """MLOPS_WARM_TRAINER=false: the whole job in this fresh process, imports included."""
    import ray

    from mlops import logs
    from mlops.clients.redis.recorder import JobRecorder
    from mlops.ml import execute, search
    from mlops.ml.specs import SearchSpec, TrainingSpec

    logs.job_id.set(json.loads(spec_json)["job_id"])
    logs.configure(settings.log_format)
    ray.init(logging_level=logging.WARNING)  # a parallel fit's workers, a search's trials
    recorder = JobRecorder(settings)
    if kind == "tune":
        search.register_trial()
        return search.job(settings, SearchSpec.from_json(spec_json), recorder)
    return execute.training(settings, TrainingSpec.from_json(spec_json), recorder)


if __name__ == "__main__":
    sys.exit(main())
