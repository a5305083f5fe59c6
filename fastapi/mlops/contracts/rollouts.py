"""A rollout: a challenger version beside a model's champion, as the API stores it
(`clients/redis/rollouts.py`) and every API process routes by it."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class RolloutMode(StrEnum):
    SHADOW = "shadow"  # the challenger also answers a share of requests, unseen
    CANARY = "canary"  # the challenger answers a share of requests instead


class RolloutOutcome(StrEnum):
    PROMOTED = "promoted"
    ABORTED = "aborted"
    EXPIRED = "expired"  # max_hours passed undecided: back to the champion alone
    SUPERSEDED = "superseded"  # the champion moved meanwhile (a promotion or rollback)


# A rollout's bounds, shared with a retraining policy's canary (contracts/retraining.py).
Percent = Annotated[int, Field(ge=1, le=100, description="Share of the champion's requests.")]
MaxHours = Annotated[float, Field(gt=0, le=24 * 30, description="Ends undecided after this.")]
MinLabels = Annotated[
    int, Field(ge=10, le=1_000_000, description="Labels each side needs before a decision.")
]


class RolloutSpec(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "version": "7",
                    "mode": "canary",
                    "percent": 10,
                    "auto": True,
                    "max_hours": 24,
                    "min_labels": 200,
                }
            ]
        },
    )

    version: str = Field(pattern=r"^[1-9][0-9]{0,9}$", description="The challenger.")
    mode: RolloutMode
    percent: Percent = 10
    auto: bool = Field(
        False, description="Promote or abort when the sequential test decides (else: by hand)."
    )
    max_hours: MaxHours = 24
    min_labels: MinLabels = 100


class Rollout(RolloutSpec):
    """As stored: the request, and what it started from."""

    id: str = Field(description="This rollout's own id (canary routing hashes with it).")
    model: str
    champion_version: str = Field(description="The champion when the rollout started.")
    started_at: datetime

    @property
    def ends_at(self) -> datetime:
        return self.started_at + timedelta(hours=self.max_hours)


class RolloutEnd(BaseModel):
    rollout: Rollout
    outcome: RolloutOutcome
    reason: str
    at: datetime
