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
from mlops.clients.redis import AlertStream, ChampionHistory, JobStore, connect
from mlops.ml import data, drift, model, predictors, promotion
from mlops.ml.registry_tags import (
    COMPILED_DIR,
    COMPILED_FILE,
    REFERENCE_DIR,
    REFERENCE_FILE,
    TAG_ACCURACY,
    TAG_CLASSES,
    TAG_COMPILED,
    TAG_COMPILED_REASON,
    TAG_F1,
    TAG_FEATURES,
    TAG_JOB,
    TAG_PROMOTION,
    TAG_PROMOTION_REASON,
)
from mlops.retry import backoff
from mlops.schemas import AlertLevel, ChampionMove, JobStatus
from mlops.settings import Settings

log = logging.getLogger("mlops.train")


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_version: str
    accuracy: float
    f1_macro: float
    decision: promotion.Decision
    champion: promotion.ChampionScore | None  # the champion it was compared with
    move: ChampionMove | None  # the alias move, when promoted

    @property
    def promoted(self) -> bool:
        return self.decision.promoted


def train_and_register(
    settings: Settings, hyperparameters: dict[str, Any], *, job_id: str
) -> TrainingResult:
    import mlflow  # heavy; imported where it is used so `--help` stays fast

    frame = data.read_csv(settings.dataset_uri, data.s3_config(settings))
    features, labels = data.split_features(frame, settings.target_column)
    parts = model.split(features, labels, test_size=settings.test_size, seed=settings.random_seed)
    pipeline = model.build_pipeline(hyperparameters, default_max_depth=settings.max_depth_limit)
    pipeline.fit(parts.x_train, parts.y_train)
    scores = model.evaluate(pipeline, parts.x_test, parts.y_test)
    log.info("job %s: accuracy %.4f, macro F1 %.4f", job_id, scores["accuracy"], scores["f1_macro"])

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    champion = promotion.score_champion(
        client,
        model_name=settings.model_name,
        alias=settings.champion_alias,
        x_test=parts.x_test,
        y_test=parts.y_test,
    )
    decision = promotion.decide(
        scores["accuracy"],
        threshold=settings.accuracy_threshold,
        tolerance=settings.promotion_tolerance,
        champion=champion,
        test_rows=len(parts.x_test),
    )
    log.info("job %s: %s", job_id, decision.reason)
    run_id, version = _log_and_register(
        settings, pipeline, parts, scores, hyperparameters, job_id=job_id
    )
    tags = {
        TAG_CLASSES: json.dumps([str(c) for c in pipeline.classes_]),
        TAG_FEATURES: json.dumps(list(parts.x_train.columns)),
        TAG_JOB: job_id,
        TAG_ACCURACY: str(scores["accuracy"]),
        TAG_F1: str(scores["f1_macro"]),
        TAG_PROMOTION: "promoted" if decision.promoted else "not promoted",
        TAG_PROMOTION_REASON: decision.reason,
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    move = None
    if decision.promoted:
        client.set_registered_model_alias(settings.model_name, settings.champion_alias, version)
        move = ChampionMove(
            action="promote",
            from_version=champion.version if champion else None,
            to_version=version,
            at=datetime.now(UTC),
            by=job_id,
            reason=decision.reason,
        )
    return TrainingResult(
        run_id, version, scores["accuracy"], scores["f1_macro"], decision, champion, move
    )


def _log_and_register(
    settings: Settings,
    pipeline: Any,
    parts: model.Split,
    scores: dict[str, float],
    hyperparameters: dict[str, Any],
    *,
    job_id: str,
) -> tuple[str, str]:
    """Log the run (parameters, scores, compiled form, drift reference) and register
    the pipeline; returns (run id, version)."""
    import mlflow
    from mlflow.models import infer_signature

    compiled, verification = _compile(pipeline, parts)
    mlflow.set_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=job_id, tags={TAG_JOB: job_id}) as run:
        mlflow.log_params({**hyperparameters, "test_size": settings.test_size})
        mlflow.log_metrics(scores)
        with tempfile.TemporaryDirectory() as folder:
            if compiled is not None:
                path = Path(folder) / COMPILED_FILE
                path.write_bytes(compiled)
                mlflow.log_artifact(str(path), artifact_path=COMPILED_DIR)
            reference = Path(folder) / REFERENCE_FILE
            profile = drift.profile(parts.x_train, seed=settings.random_seed)
            reference.write_text(json.dumps(profile))
            mlflow.log_artifact(str(reference), artifact_path=REFERENCE_DIR)
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
    compiled_as = "onnx" if compiled is not None else "none"
    client.set_model_version_tag(settings.model_name, version, TAG_COMPILED, compiled_as)
    client.set_model_version_tag(settings.model_name, version, TAG_COMPILED_REASON, verification)
    return run.info.run_id, version


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
            f"of {settings.model_name} is now the {settings.champion_alias} "
            f"({result.decision.reason})."
        )
    return "warning", (
        f"Latest model accuracy was {result.accuracy:.4f}: version {result.model_version} is "
        f"registered but not promoted: {result.decision.reason}."
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
    move: ChampionMove | None = None,
) -> None:
    """Record the job's outcome (it knows best, so it wins), the champion's move if it
    made one, and raise its one alert (each once, however often this is retried)."""

    async def attempt() -> None:
        redis = connect(settings)
        try:
            jobs = JobStore(redis, history=settings.job_history)
            outcome = {k: v for k, v in fields.items() if k != "status"}
            await jobs.finish(job_id, fields["status"], seconds, **outcome)
            if move is not None:
                history = ChampionHistory(redis, model_name=settings.model_name)
                await history.record_for_job(job_id, move)
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
        "promotion_reason": result.decision.reason,
        "champion_version": result.champion.version if result.champion else None,
        "champion_accuracy": result.champion.accuracy if result.champion else None,
        "error": None,
    }
    alert = outcome_alert(result, settings)
    seconds = time.monotonic() - started
    asyncio.run(_record(settings, job_id, seconds, fields, alert, result.move))
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
