"""What an alert says about itself, for the API and the jobs that publish alerts and
the dashboards that show them."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

AlertLevel = Literal["info", "success", "warning", "error"]


class AlertKind(StrEnum):
    """What raised an alert."""

    TRAINING = "training"  # a job's outcome
    WATCH = "watch"  # a "model is stale" watch
    SCHEDULE = "schedule"  # a scheduled run that was skipped
    DRIFT = "drift"  # a drift check that found drift
    CHAMPION = "champion"  # the champion moved by hand
