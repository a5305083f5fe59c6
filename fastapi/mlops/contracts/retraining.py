"""A model's retraining policy (part of its definition) and the steps the API's
retraining loop records as it carries it out (`services/retraining.py`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from mlops.contracts.rollouts import MaxHours, MinLabels, Percent


class CanaryPolicy(BaseModel):
    """A retrained version that passes the gate goes into a canary decided by the
    sequential test, instead of taking the champion alias at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    percent: Percent = 10
    max_hours: MaxHours = 24
    min_labels: MinLabels = 100


class RetrainingPolicy(BaseModel):
    """When the platform retrains a model on its own (all off by default)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "on_drift": True,
                    "on_live_below_gate": True,
                    "cooldown_minutes": 360,
                    "canary": {"percent": 10, "max_hours": 24, "min_labels": 200},
                }
            ]
        },
    )

    on_drift: bool = Field(False, description="Retrain on a drift alert of the model's champion.")
    on_live_below_gate: bool = Field(
        False, description="Retrain when a version's live metric falls short of the gate."
    )
    cooldown_minutes: float = Field(
        60, ge=1, le=30 * 24 * 60, description="At most one retraining started in this time."
    )
    canary: CanaryPolicy | None = Field(
        None,
        description="Roll the new version out in an automatic canary (else the gate promotes).",
    )

    @property
    def enabled(self) -> bool:
        return self.on_drift or self.on_live_below_gate


class Trigger(StrEnum):
    """What started a retraining: the alert's kind."""

    DRIFT = "drift"
    LIVE = "live"


class Step(StrEnum):
    STARTED = "started"  # a training was submitted
    NOT_STARTED = "not_started"  # it could not be (Ray, MLflow or the job limit refused)
    FAILED = "failed"  # the training job failed
    PROMOTED = "promoted"  # the gate made the new version champion
    NOT_PROMOTED = "not_promoted"  # the gate kept the champion
    CANARY_STARTED = "canary_started"  # the new version went into an automatic canary
    CANARY_NOT_STARTED = "canary_not_started"  # it passed the gate, but no canary started
    CANARY_ENDED = "canary_ended"  # that canary ended (promoted, aborted, ...)


class RetrainingStep(BaseModel):
    """One step of one retraining, as the model's history shows it."""

    at: datetime
    step: Step
    trigger: Trigger
    job_id: str | None = None
    version: str | None = Field(None, description="The version it trained, once known.")
    detail: str = Field(description="What happened, in words.")


class Retraining(BaseModel):
    """A retraining under way, as every API process reads it: claimed, then its job
    submitted, then (with a canary policy) its version rolled out."""

    model: str
    trigger: Trigger
    since: datetime
    cause: str = Field(description="The alert that started it.")
    job_id: str | None = Field(None, description="None until Ray has taken the job.")
    version: str | None = None
