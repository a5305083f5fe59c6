"""The entrypoint of a training job, as Ray's Jobs API runs it:

    python -m mlops.ml.job --spec '{"job_id": "train-…", "hyperparameters": {…}, …}'

It imports only Ray, then runs the job in the warm trainer (`mlops.ml.trainer`), started
by the first job that needs it. The job's MLOPS_* variables (its runtime environment)
go with the call, so each job trains with the settings of the API that submitted it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import ray

from mlops.ml import trainer
from mlops.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the job as JSON (ml.train.TrainingSpec)")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    # Secrets stay out of the call: the trainer reads them from its node's environment.
    secrets = Settings.secret_variables()
    env = {k: v for k, v in os.environ.items() if k.startswith("MLOPS_") and k not in secrets}
    tracking_uri = env.get("MLOPS_MLFLOW_TRACKING_URI", "")
    ray.init(namespace=trainer.NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    worker = trainer.get_or_start(tracking_uri, env.get("MLOPS_LOG_FORMAT", "json"))
    outcome: tuple[int, str] = ray.get(worker.run.remote(env, json.dumps(spec)))
    code, summary = outcome
    sys.stdout.write(f"{summary} (its log: the trainer actor's, in the Ray dashboard)\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
