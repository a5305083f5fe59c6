"""What a job was asked to do, as the API submits it and the code in Ray reads it
(JSON on the job's command line; the job record holds the same fields). Each carries
the model it trains (`ModelRef`): code in Ray never reads model definitions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops.contracts.model_definition import Metric, ModelRef


class TrainingSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    model: ModelRef
    hyperparameters: dict[str, Any]
    dataset_uri: str
    target_column: str
    promote: bool = Field(
        True, description="False: a version that passes the gate is left for a rollout."
    )

    def as_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> TrainingSpec:
        return cls.model_validate_json(text)


class SearchSpec(BaseModel):
    """A hyperparameter search: `search_space` maps a parameter of the model's estimator
    to one distribution, {"choice": [...]}, {"randint": [low, high]} (high excluded),
    {"uniform": [low, high]} or {"loguniform": [low, high]}; the best trial is the one
    with the best `metric` in its direction (rmse and mae: lowest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    model: ModelRef
    search_space: dict[str, dict[str, list[Any]]]
    trials: int
    metric: Metric
    dataset_uri: str
    target_column: str
    max_concurrent_trials: int | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)  # parameters every trial gets

    def as_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> SearchSpec:
        return cls.model_validate_json(text)
