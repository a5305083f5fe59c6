"""What /models takes and answers: a model's definition as people write it, and the
models as listed (with their champions)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mlops.contracts.model_definition import (
    MODEL_NAME_PATTERN,
    Estimator,
    Gate,
    Metric,
    ModelSpec,
    Task,
)
from mlops.contracts.retraining import RetrainingPolicy
from mlops.schemas import ModelVersionInfo

ModelName = Annotated[
    str,
    Field(
        pattern=MODEL_NAME_PATTERN,
        description="Lowercase letters, digits and -, 1-63 characters, e.g. wine.",
        examples=["wine"],
    ),
]


class ModelCreate(BaseModel):
    """A new model. The gate defaults to accuracy ≥ MLOPS_ACCURACY_THRESHOLD
    (classification) or r2 ≥ 0 (regression)."""

    model_config = ConfigDict(extra="forbid")

    name: ModelName
    dataset_uri: str = Field(min_length=1, description="CSV or Parquet: a path or s3:// URI.")
    target_column: str = Field(min_length=1)
    task: Task = Task.CLASSIFICATION
    estimator: Estimator = Estimator.RANDOM_FOREST
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Defaults for every training of the model."
    )
    gate: Gate | None = None
    retraining: RetrainingPolicy = Field(
        default_factory=RetrainingPolicy, description="When the platform retrains it."
    )


class ModelPatch(BaseModel):
    """Fields to change; those left out keep their value. A change of task must come
    with an estimator and a gate of that task."""

    model_config = ConfigDict(extra="forbid")

    dataset_uri: str | None = Field(None, min_length=1)
    target_column: str | None = Field(None, min_length=1)
    task: Task | None = None
    estimator: Estimator | None = None
    hyperparameters: dict[str, Any] | None = None
    gate: Gate | None = None
    retraining: RetrainingPolicy | None = None


class ChampionSummary(BaseModel):
    version: str
    metric: Metric
    score: float | None = Field(description="Its held-out score on the gate's metric.")
    trained_at: datetime


class ModelInfo(BaseModel):
    name: str
    registered_model: str = Field(description="The MLflow registered model of its versions.")
    spec: ModelSpec
    is_default: bool
    created_at: datetime
    updated_at: datetime
    champion: ChampionSummary | None


class ModelCatalogList(BaseModel):
    default_model: str
    models: list[ModelInfo]


class ModelDetail(ModelInfo):
    versions: list[ModelVersionInfo] = Field(description="Every version, newest first.")
