"""A job from start to recorded outcome: mark it running, do its work (a training, or a
search that ends by registering its best trial), then record the outcome and its one
alert through the recorder its entrypoint gives (`contracts.recording`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from mlops.contracts.alerts import AlertLevel
from mlops.contracts.jobs import JobOutcome, JobStatus
from mlops.contracts.recording import JobRecording
from mlops.ml import promotion
from mlops.ml.specs import TrainingSpec
from mlops.ml.train import TrainingResult, signing_key, train_and_register
from mlops.settings.training import TrainingSettings

log = logging.getLogger(__name__)


def training(
    settings: TrainingSettings,
    spec: TrainingSpec,
    recorder: JobRecording,
    champions: promotion.ChampionCache | None = None,
) -> int:
    """One training job, start to recorded outcome; its exit code."""
    return execute(
        settings, spec.job_id, lambda: train_and_register(settings, spec, champions), recorder
    )


def execute(
    settings: TrainingSettings,
    job_id: str,
    work: Callable[[], TrainingResult],
    recorder: JobRecording,
    *,
    what: str = "Training job",
) -> int:
    """Mark the job running, do its work, and record the outcome and its one alert."""
    started = time.monotonic()
    recorder.mark_running(job_id)
    try:
        signing_key(settings)  # a job that could not seal its version does no work
        result = work()
    except Exception as exc:
        log.exception("job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"
        recorder.finish(
            job_id,
            status=JobStatus.FAILED,
            seconds=time.monotonic() - started,
            outcome={"finished_at": _now(), "error": error},
            alert=("error", f"{what} {job_id} failed: {error}"),
        )
        return 1
    recorder.finish(
        job_id,
        status=JobStatus.SUCCEEDED,
        seconds=time.monotonic() - started,
        outcome=_outcome(result),
        alert=outcome_alert(result, settings.model_name, settings.champion_alias),
        move=result.move,
    )
    return 0


def _outcome(result: TrainingResult) -> JobOutcome:
    return {
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
        **result.extra,
    }


def outcome_alert(result: TrainingResult, model_name: str, alias: str) -> tuple[AlertLevel, str]:
    """(level, text) of the alert for a finished training run."""
    if result.promoted:
        return "success", (
            f"Latest model accuracy was {result.accuracy:.4f}: version {result.model_version} "
            f"of {model_name} is now the {alias} "
            f"({result.decision.reason})."
        )
    return "warning", (
        f"Latest model accuracy was {result.accuracy:.4f}: version {result.model_version} is "
        f"registered but not promoted: {result.decision.reason}."
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()
