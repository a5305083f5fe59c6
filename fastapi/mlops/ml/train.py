"""Training, as the command a Ray job runs:

    python -m mlops.ml.train --job-id train-… --hyperparameters '{"n_estimators": 100}'

Reads the dataset, fits the pipeline, logs and registers it in MLflow, moves the
champion alias when the accuracy clears the threshold, and records the outcome and an
alert in Redis. Settings come from MLOPS_* variables (the job's runtime environment).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from mlops import logs
from mlops.clients.redis import AlertStream, JobStore, connect
from mlops.ml import data, model, predictors
from mlops.ml.registry_tags import (
    COMPILED_DIR,
    COMPILED_FILE,
    TAG_CLASSES,
    TAG_COMPILED,
    TAG_COMPILED_REASON,
    TAG_FEATURES,
)
from mlops.retry import backoff
from mlops.schemas import AlertLevel, JobStatus
from mlops.settings import Settings

log = logging.getLogger("mlops.train")


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_version: str
    accuracy: float
    f1_macro: float
    promoted: bool


def train_and_register(
    settings: Settings, hyperparameters: dict[str, Any], *, job_id: str
) -> TrainingResult:
    import mlflow  # heavy; imported where it is used so `--help` stays fast
    from mlflow.models import infer_signature

    frame = data.read_csv(settings.dataset_uri, data.s3_config(settings))
    features, labels = data.split_features(frame, settings.target_column)
    parts = model.split(features, labels, test_size=settings.test_size, seed=settings.random_seed)
    pipeline = model.build_pipeline(hyperparameters)
    pipeline.fit(parts.x_train, parts.y_train)
    scores = model.evaluate(pipeline, parts.x_test, parts.y_test)
    log.info("job %s: accuracy %.4f, macro F1 %.4f", job_id, scores["accuracy"], scores["f1_macro"])

    compiled, verification = _compile(pipeline, parts)

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=job_id, tags={"mlops.job_id": job_id}) as run:
        mlflow.log_params({**hyperparameters, "test_size": settings.test_size})
        mlflow.log_metrics(scores)
        if compiled is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / COMPILED_FILE
                path.write_bytes(compiled)
                mlflow.log_artifact(str(path), artifact_path=COMPILED_DIR)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(parts.x_train, pipeline.predict(parts.x_train)),
            input_example=parts.x_train.head(3),
            registered_model_name=settings.model_name,
            skops_trusted_types=model.SKOPS_TRUSTED_TYPES,
            # Given, not inferred: inference loads the model in a subprocess (seconds).
            pip_requirements=model.pip_requirements(),
            metadata={"classes": [str(c) for c in pipeline.classes_]},
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    tags = {
        TAG_COMPILED: "onnx" if compiled is not None else "none",
        TAG_COMPILED_REASON: verification,
        TAG_CLASSES: json.dumps([str(c) for c in pipeline.classes_]),
        TAG_FEATURES: json.dumps(list(parts.x_train.columns)),
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    promoted = scores["accuracy"] >= settings.accuracy_threshold
    if promoted:
        client.set_registered_model_alias(settings.model_name, settings.champion_alias, version)
    return TrainingResult(
        run.info.run_id, version, scores["accuracy"], scores["f1_macro"], promoted
    )


def _compile(pipeline, parts: model.Split) -> tuple[bytes | None, str]:
    """The ONNX form if it predicts like the pipeline on the held-out rows; else why not."""
    try:
        compiled = predictors.compile_to_onnx(pipeline, parts.x_train)
        check = predictors.verify_compiled(compiled, pipeline, parts.x_test)
    except Exception as exc:  # a converter gap must not fail training: serve sklearn
        log.warning("could not compile the pipeline: %s", exc)
        return None, f"compilation failed: {exc}"
    if not check.matches:
        log.warning("compiled form rejected: %s", check.reason)
        return None, check.reason
    return compiled, f"{check.reason}; max probability difference {check.max_probability_diff:.4f}"


def outcome_alert(result: TrainingResult, settings: Settings) -> tuple[AlertLevel, str]:
    """(level, text) of the alert for a finished training run."""
    if result.promoted:
        return "success", (
            f"Latest model accuracy was {result.accuracy:.4f}: version {result.model_version} "
            f"of {settings.model_name} is now the {settings.champion_alias}."
        )
    return "warning", (
        f"Latest model accuracy was {result.accuracy:.4f}, below the "
        f"{settings.accuracy_threshold} threshold: version {result.model_version} is registered "
        f"but not promoted."
    )


async def _mark_running(settings: Settings, job_id: str) -> None:
    """Best effort: if Redis is away, the API's reconciler marks the job running from
    Ray's own status, so training goes on."""
    redis = connect(settings)
    try:
        await JobStore(redis, history=settings.job_history).mark_running(job_id, _now())
    except (RedisError, OSError) as exc:
        log.warning("could not mark job %s running (Redis: %s); training anyway", job_id, exc)
    finally:
        await redis.aclose()


async def _until_redis_answers(settings: Settings, attempt: Callable[[], Awaitable[None]]) -> None:
    """Retry `attempt` through a Redis outage of up to MLOPS_REDIS_WAIT_SECONDS, so an
    outcome reached while Redis is down is recorded, and alerted, once it is back."""
    async for retry in backoff(
        on=(RedisError, OSError),
        first=0.5,
        cap=10.0,
        within=settings.redis_wait_seconds,
        what="recording the outcome in Redis",
    ):
        with retry:
            await attempt()


async def _record(
    settings: Settings,
    job_id: str,
    seconds: float,
    fields: dict[str, Any],
    alert: tuple[AlertLevel, str],
) -> None:
    """Record the job's outcome (it knows best, so it wins) and raise its one alert."""

    async def attempt() -> None:
        redis = connect(settings)
        try:
            jobs = JobStore(redis, history=settings.job_history)
            outcome = {k: v for k, v in fields.items() if k != "status"}
            await jobs.finish(job_id, fields["status"], seconds, **outcome)
            level, text = alert
            alerts = AlertStream(redis, max_len=settings.alert_history)
            await alerts.publish_for_job(job_id, level, text, data={"job_id": job_id, **fields})
        finally:
            await redis.aclose()

    await _until_redis_answers(settings, attempt)


def run(job_id: str, hyperparameters: dict[str, Any], settings: Settings) -> int:
    started = time.monotonic()
    asyncio.run(_mark_running(settings, job_id))
    try:
        result = train_and_register(settings, hyperparameters, job_id=job_id)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"
        failure: dict[str, Any] = {
            "status": JobStatus.FAILED,
            "finished_at": _now(),
            "error": error,
        }
        alarm: tuple[AlertLevel, str] = ("error", f"Training job {job_id} failed: {error}")
        asyncio.run(_record(settings, job_id, time.monotonic() - started, failure, alarm))
        return 1
    fields: dict[str, Any] = {
        "status": JobStatus.SUCCEEDED,
        "finished_at": _now(),
        "run_id": result.run_id,
        "model_version": result.model_version,
        "accuracy": result.accuracy,
        "f1_macro": result.f1_macro,
        "promoted": result.promoted,
        "error": None,
    }
    alert = outcome_alert(result, settings)
    asyncio.run(_record(settings, job_id, time.monotonic() - started, fields, alert))
    return 0


def _now() -> str:
    return datetime.now(UTC).isoformat()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--hyperparameters", default="{}", help="JSON object")
    args = parser.parse_args(argv)
    settings = Settings()
    logs.job_id.set(args.job_id)  # on every line this run logs
    logs.configure(settings.log_format)
    return run(args.job_id, json.loads(args.hyperparameters), settings)


if __name__ == "__main__":
    sys.exit(main())
