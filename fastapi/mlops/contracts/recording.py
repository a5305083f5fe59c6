"""What the code inside Ray records, as it sees it: a job through a synchronous
recorder (`clients/redis/recorder.py` keeps it in Redis), a replica the rows it served
(`clients/redis/drift_samples.py`) and the predictions it answered
(`clients/redis/predictions.py`). The entrypoints (a job's, the warm trainer, the
replica) hand them in, so the rest of `ml/` never opens a Redis client itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from mlops.contracts.alerts import AlertLevel
from mlops.contracts.champion import ChampionMove
from mlops.contracts.jobs import JobOutcome, JobStatus, SearchProgress
from mlops.contracts.predictions import Encoded


class JobRecording(Protocol):
    def mark_running(self, job_id: str) -> None:
        """Best effort: the API's reconciler marks a job running from Ray's status."""

    def progress(self, job_id: str, progress: SearchProgress) -> None:
        """Best effort: how far an unfinished search is."""

    def finish(
        self,
        job_id: str,
        *,
        status: JobStatus,
        seconds: float,
        outcome: JobOutcome,
        alert: tuple[AlertLevel, str],
        model: str,
        move: ChampionMove | None = None,
    ) -> None:
        """The job's outcome, the champion's move if it made one, and its one alert
        (naming `model`), each recorded once however often this is called."""

    def recorded_in(self, job_id: str, seconds: float) -> None:
        """Best effort: how long `finish` took (the record's last phase)."""


class ServedRowsSink(Protocol):
    async def append(
        self, model_name: str, rows_by_version: Mapping[str, Sequence[Sequence[float]]]
    ) -> None:
        """Rows a replica served of a registered model, by version (a sample, for drift
        checks)."""


class PredictionSink(Protocol):
    async def record(self, predictions: Sequence[Encoded]) -> None:
        """Predictions a replica answered, recorded for feedback (one round trip)."""
