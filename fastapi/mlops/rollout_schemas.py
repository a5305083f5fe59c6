"""A rollout of a challenger version beside a model's champion, as requested, stored and
reported."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mlops.contracts.model_definition import Metric
from mlops.contracts.rollouts import Rollout, RolloutEnd, RolloutSpec
from mlops.feedback_schemas import LiveEstimate
from mlops.sequential import Decision


class RolloutArm(BaseModel):
    version: str
    labels: int = Field(description="Labelled predictions of this side since the start.")
    live: dict[Metric, LiveEstimate]


class RolloutDifference(BaseModel):
    """Challenger minus champion in per-label score (accuracy; minus the absolute or
    squared error for regression), with its always-valid interval."""

    value: float
    low: float
    high: float


class RolloutReport(BaseModel):
    """A model's rollout in progress, else its last one; `rollout` null if it had none."""

    model: str
    rollout: Rollout | None
    active: bool
    ended: RolloutEnd | None = None
    champion: RolloutArm | None = None
    challenger: RolloutArm | None = None
    difference: RolloutDifference | None = Field(
        None, description="Null until both sides have labels."
    )
    decision: Decision | None = Field(None, description="What the sequential test says now.")
    alpha: float
    agreement: float | None = Field(
        None, description="Shadow: share of requests both sides answered alike."
    )


RolloutRequest = RolloutSpec
