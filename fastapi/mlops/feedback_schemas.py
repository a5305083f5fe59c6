"""Request and response bodies of recorded predictions, feedback and live metrics."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from mlops.contracts.model_definition import Metric
from mlops.contracts.predictions import HOUR_MS, PREDICTION_ID_PATTERN, Arm
from mlops.live_metrics import Estimate

MAX_FEEDBACK_ITEMS = 1000
LabelField = StrictInt | StrictFloat | str
_LABEL_DESCRIPTION = (
    "The true outcome: a class name or index (classification), a number (regression)."
)


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REPLACED = "replaced"  # the label sent before for it no longer counts
    UNKNOWN = "unknown"  # no such prediction was recorded
    EXPIRED = "expired"  # recorded, but older than the store keeps
    WRONG_LABEL = "wrong_label"  # not a label of the prediction's model


class Window(StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"

    @property
    def milliseconds(self) -> int:
        return {"hour": 1, "day": 24, "week": 168}[self.value] * HOUR_MS


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN, description="From /inference.")
    label: LabelField = Field(description=_LABEL_DESCRIPTION, examples=["Virginica"])


class FeedbackRequest(BaseModel):
    """One label (`prediction_id` and `label`), or up to 1,000 as `items`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"prediction_id": "19aef3c2d410000000000000001", "label": "Virginica"},
                {"items": [{"prediction_id": "19aef3c2d410000000000000001", "label": 2}]},
            ]
        },
    )

    prediction_id: str | None = Field(None, pattern=PREDICTION_ID_PATTERN)
    label: LabelField | None = Field(None, description=_LABEL_DESCRIPTION)
    items: list[FeedbackItem] | None = Field(None, min_length=1, max_length=MAX_FEEDBACK_ITEMS)

    @model_validator(mode="after")
    def _one_or_many(self) -> Self:
        single = self.prediction_id is not None or self.label is not None
        if single == (self.items is not None):
            raise ValueError("give either prediction_id and label, or items")
        if single and (self.prediction_id is None or self.label is None):
            raise ValueError("a single label needs both prediction_id and label")
        return self

    def pairs(self) -> list[tuple[str, int | float | str]]:
        if self.items is not None:
            return [(item.prediction_id, item.label) for item in self.items]
        assert self.prediction_id is not None and self.label is not None  # _one_or_many
        return [(self.prediction_id, self.label)]


class FeedbackItemResult(BaseModel):
    prediction_id: str
    outcome: Outcome
    detail: str | None = Field(None, description="Why, when not accepted; or what it replaced.")
    model: str | None = None
    model_version: str | None = None


class FeedbackResponse(BaseModel):
    counts: dict[Outcome, int] = Field(description="Items per outcome.")
    items: list[FeedbackItemResult] = Field(description="One per item sent, in order.")


class PredictionInfo(BaseModel):
    prediction_id: str
    model_version: str
    arm: Arm
    input_data: list[float]
    prediction: int | float
    label: str | None = Field(None, description="Classification: the predicted class.")
    probabilities: dict[str, float] | None = None
    predicted_at: datetime


class PredictionList(BaseModel):
    model: str
    predictions: list[PredictionInfo] = Field(description="Newest first.")


class LiveEstimate(BaseModel):
    value: float | None = Field(description="On the window's labels (null: undefined).")
    low: float | None = Field(description="95 % interval, lower end.")
    high: float | None = Field(description="95 % interval, upper end.")

    @classmethod
    def of(cls, estimate: Estimate) -> LiveEstimate:
        return cls(
            value=_finite(estimate.value), low=_finite(estimate.low), high=_finite(estimate.high)
        )


def live_estimates(found: dict[Metric, Estimate]) -> dict[Metric, LiveEstimate]:
    return {metric: LiveEstimate.of(estimate) for metric, estimate in found.items()}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class VersionPerformance(BaseModel):
    version: str
    is_champion: bool
    labels: int = Field(description="Labelled predictions in the window.")
    live: dict[Metric, LiveEstimate]
    offline: float | None = Field(description="The gate metric held out at training.")


class PerformanceReport(BaseModel):
    model: str
    metric: Metric = Field(description="The model's gate metric.")
    threshold: float | None = Field(description="The gate's bound on it.")
    window: Window | None = Field(description="The time window, when not `last`.")
    last: int | None = Field(description="The newest labels counted, when given.")
    versions: list[VersionPerformance] = Field(description="Versions with labels, newest first.")
