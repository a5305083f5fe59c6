"""What a Serve replica reads (`mlops.ml.model_server`): the common settings, and how
it follows the champion, samples what it serves and records its predictions."""

from __future__ import annotations

from pydantic import Field

from mlops.settings.base import RuntimeSettings


class ServingSettings(RuntimeSettings):
    serve_reload_seconds: float = Field(
        2.0, gt=0, description="How often replicas check which version is the champion."
    )
    models_per_replica: int = Field(
        32,
        ge=1,
        le=256,
        description="Models (a champion, or a pinned version) each Serve replica holds at "
        "once; the least recently used is unloaded. Serve routes a model's requests to a "
        "replica that holds it.",
    )
    drift_sample_rows: int = Field(
        5000, ge=100, description="Recent served rows kept per model version for drift checks."
    )

    # Predictions recorded by the replica that answered them (ml/recording.py).
    prediction_history: int = Field(
        100_000,
        ge=100,
        description="Recorded predictions kept per model at most (the newest; the oldest "
        "leave a stream entry, up to a hundred predictions, at a time).",
    )
    prediction_max_age_hours: float = Field(
        168,
        gt=0,
        le=24 * 90,
        description="Recorded predictions older than this are dropped; labels sent for "
        "them are answered `expired`.",
    )
    prediction_flush_seconds: float = Field(
        0.2,
        gt=0,
        le=5,
        description="How often each Serve replica writes the predictions it answered to "
        "Redis (in one batch).",
    )
    prediction_backlog: int = Field(
        10_000,
        ge=100,
        description="Predictions waiting to be recorded at most, per Serve replica; beyond, "
        "they are answered unrecorded (and counted).",
    )
