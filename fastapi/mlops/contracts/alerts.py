"""What an alert says about itself, for the API and the jobs that publish alerts and
the dashboards that show them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

AlertLevel = Literal["info", "success", "warning", "error"]


class AlertKind(StrEnum):
    """What raised an alert."""

    TRAINING = "training"  # a job's outcome
    WATCH = "watch"  # a "model is stale" watch
    SCHEDULE = "schedule"  # a scheduled run that was skipped
    DRIFT = "drift"  # a drift check that found drift
    CHAMPION = "champion"  # the champion moved by hand
    ROLLOUT = "rollout"  # a rollout started or ended
    LIVE = "live"  # a version's live metric fell below its model's gate
    RETRAINING = "retraining"  # a step of a model's retraining policy


class Alert(BaseModel):
    """One alert as the stream keeps it and the API and the dashboard show it."""

    id: str = Field(description="Stream id; also the SSE event id.")
    level: AlertLevel
    text: str
    kind: AlertKind = Field(description="What raised it.")
    created_at: datetime
    data: dict[str, Any] | None = None
