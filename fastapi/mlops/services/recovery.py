"""A job's outcome read back from MLflow, when the job could not record it in Redis.

A training records its outcome in Redis and waits out an outage of up to
MLOPS_REDIS_WAIT_SECONDS. Past that it gives up and Ray shows it failed, although it
may have registered, and promoted, a version. That version is the durable record: the
reconciler finds the one the job registered (its `mlops.job_id` tag, under the
platform's seal, so nobody else can claim a job) and records the outcome from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlops.clients.mlflow_registry import MlflowRegistry, TaggedVersion
from mlops.contracts.alerts import AlertLevel
from mlops.contracts.champion import ChampionMove
from mlops.contracts.jobs import JobOutcome, JobStatus
from mlops.contracts.model_definition import ModelDefinition
from mlops.contracts.version_card import VersionCard
from mlops.ml import provenance
from mlops.settings.api import ApiSettings


@dataclass(frozen=True)
class RecoveredOutcome:
    status: JobStatus
    outcome: JobOutcome  # for the job record
    move: ChampionMove | None  # the champion's move, if the job made it
    level: AlertLevel
    text: str


async def recover_outcome(
    registry: MlflowRegistry, settings: ApiSettings, model: ModelDefinition, job_id: str
) -> RecoveredOutcome | None:
    """The outcome of a job that registered a sealed version of `model`; None if it
    registered none."""
    name = model.registered_model
    registered = _registered_by(await registry.versions(name), name, settings, job_id)
    if registered is None:
        return None
    found, card = registered
    promoted, reason = card.promoted, card.promotion_reason
    metric = model.spec.gate.metric
    champion = await registry.alias_version(name, settings.champion_alias)
    move = None
    if promoted and champion == found.version:
        move = ChampionMove(
            model=model.name,
            action="promote",
            from_version=None,
            to_version=found.version,
            at=found.created_at,
            by=job_id,
            reason=reason,
        )
    outcome: JobOutcome = {
        "finished_at": datetime.now(UTC).isoformat(),
        "run_id": found.run_id,
        "model_version": found.version,
        "scores": card.scores,
        "accuracy": card.accuracy,
        "f1_macro": card.f1_macro,
        "gate_metric": metric,
        # What happened, not only what the gate decided: the job may have stopped
        # before the alias moved, or the alias may have moved on since.
        "promoted": move is not None,
        "promotion_reason": reason
        if move or not promoted
        else f"{reason}; the {settings.champion_alias} alias is not on this version",
        "held_for_rollout": card.held_for_rollout,
        "error": None,
    }
    verdict = f"is now the {settings.champion_alias}" if move else "was not promoted"
    text = (
        f"Training job {job_id}'s outcome was read back from MLflow (Redis was unreachable "
        f"when it ended): version {found.version} of {model.name}, "
        f"{metric} {card.scores.get(metric, float('nan')):.4f}, "
        f"{verdict} ({reason})."
    )
    level: AlertLevel = "success" if move else "warning"
    return RecoveredOutcome(JobStatus.SUCCEEDED, outcome, move, level, text)


def _registered_by(
    versions: list[TaggedVersion], name: str, settings: ApiSettings, job_id: str
) -> tuple[TaggedVersion, VersionCard] | None:
    """The sealed version the job registered, and its card."""
    key = settings.signing_key()
    for version in versions:
        card = VersionCard.read(version.tags)
        if card is None or card.job_id != job_id:
            continue
        foreign = provenance.why_foreign(
            key,
            model=name,
            version=version.version,
            run_id=version.run_id,
            found=version.tags,
        )
        if foreign is None:
            return version, card
    return None
