"""What a Serve replica reads (`mlops.ml.model_server`): the common settings, and how
it follows the champion and samples what it serves."""

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
