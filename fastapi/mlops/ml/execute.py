"""A job from start to recorded outcome: mark it running, do its work (a training, or a
search that ends by registering its best trial), then record the outcome and its one
alert through the recorder its entrypoint gives (`contracts.recording`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlops.contracts.alerts import AlertLevel
from mlops.contracts.jobs import JobOutcome, JobStatus
from mlops.contracts.model_definition import ModelRef
from mlops.contracts.recording import JobRecording
from mlops.ml import promotion
from mlops.ml.phases import JobStopped, Phases
from mlops.ml.specs import TrainingSpec
from mlops.ml.train import TrainingResult, signing_key, train_and_register
from mlops.settings.training import TrainingSettings

if TYPE_CHECKING:
    from mlops.ml.tree_builders import TreeBuilders

log = logging.getLogger(__name__)


def training(
    settings: TrainingSettings,
    spec: TrainingSpec,
    recorder: JobRecording,
    champions: promotion.ChampionCache | None = None,
    stopped: Callable[[], bool] = lambda: False,
    builders: TreeBuilders | None = None,
) -> int:
    """One training job, start to recorded outcome; its exit code."""
    work = lambda phases: train_and_register(  # noqa: E731
        settings, spec, champions, phases, builders
    )
    return execute(settings, spec.job_id, spec.model, work, recorder, stopped=stopped)


def execute(
    settings: TrainingSettings,
    job_id: str,
    model: ModelRef,
    work: Callable[[Phases], TrainingResult],
    recorder: JobRecording,
    *,
    what: str = "Training job",
    stopped: Callable[[], bool] = lambda: False,
) -> int:
    """Mark the job running, do its work (timing its phases, ending at the next one
    once `stopped`), and record the outcome and its one alert, then how long that took."""
    started, began_at, phases = time.monotonic(), _now(), Phases(stopped)
    recorder.mark_running(job_id)
    try:
        signing_key(settings)  # a job that could not seal its version does no work
        result = work(phases)
    except JobStopped as exc:
        log.warning("job %s: %s", job_id, exc)
        status, code, move = JobStatus.STOPPED, 1, None
        outcome: JobOutcome = {"finished_at": _now(), "error": str(exc)}
        alert: tuple[AlertLevel, str] = ("warning", f"{what} {job_id} {exc}: nothing registered")
    except Exception as exc:
        log.exception("job %s failed", job_id)
        error = f"{type(exc).__name__}: {exc}"
        status, code, move = JobStatus.FAILED, 1, None
        outcome = {"finished_at": _now(), "error": error}
        alert = ("error", f"{what} {job_id} failed: {error}")
    else:
        status, code = JobStatus.SUCCEEDED, 0
        outcome = _outcome(result, model)
        alert = outcome_alert(result, model, settings.champion_alias)
        move = result.move
    outcome |= {"began_at": began_at, "phases": phases.seconds}
    writing = time.perf_counter()
    recorder.finish(
        job_id,
        status=status,
        seconds=time.monotonic() - started,
        outcome=outcome,
        alert=alert,
        model=model.name,
        move=move,
    )
    recorder.recorded_in(job_id, time.perf_counter() - writing)
    return code


def _outcome(result: TrainingResult, model: ModelRef) -> JobOutcome:
    metric = model.gate.metric
    champion_score = result.champion.score if result.champion else None
    return {
        "finished_at": _now(),
        "run_id": result.run_id,
        "model_version": result.model_version,
        "accuracy": result.scores.get("accuracy"),
        "f1_macro": result.scores.get("f1_macro"),
        "scores": result.scores,
        "gate_metric": metric,
        "promoted": result.promoted,
        "held_for_rollout": result.decision.held,
        "promotion_reason": result.decision.reason,
        "champion_version": result.champion.version if result.champion else None,
        "champion_score": champion_score,
        "champion_accuracy": champion_score if metric == "accuracy" else None,
        "error": None,
        **result.extra,
    }


def outcome_alert(result: TrainingResult, model: ModelRef, alias: str) -> tuple[AlertLevel, str]:
    """(level, text) of the alert for a finished training run; it names the model."""
    metric = model.gate.metric
    latest = f"Latest model {metric} was {result.scores[metric]:.4f}"
    if result.promoted:
        return "success", (
            f"{latest}: version {result.model_version} of {model.name} is now the {alias} "
            f"({result.decision.reason})."
        )
    if result.decision.held:
        return "info", (
            f"{latest}: version {result.model_version} of {model.name} is registered for a "
            f"canary rollout ({result.decision.reason})."
        )
    return "warning", (
        f"{latest}: version {result.model_version} of {model.name} is registered but not "
        f"promoted: {result.decision.reason}."
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()
