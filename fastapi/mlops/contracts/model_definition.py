"""A model: its name and definition (dataset, task, estimator family, default
hyperparameters, promotion gate), as the API stores it in Redis and hands it to every
job that trains it (the job spec carries a copy: code in Ray never reads definitions).

Definitions are JSON, validated here on every read and write; nothing else parses them.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from mlops.contracts.retraining import RetrainingPolicy

# Lowercase letters, digits and "-", 1-63 characters, starting and ending with a letter
# or digit: a DNS label, so a name is also safe in a URL path, a Redis key and a
# Serve multiplexed model id.
MODEL_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_NAME = re.compile(MODEL_NAME_PATTERN)


def is_model_name(name: str) -> bool:
    return bool(_NAME.match(name))


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class Estimator(StrEnum):
    RANDOM_FOREST = "random_forest"
    EXTRA_TREES = "extra_trees"
    HIST_GRADIENT_BOOSTING = "hist_gradient_boosting"
    LOGISTIC_REGRESSION = "logistic_regression"
    RIDGE = "ridge"


ESTIMATORS: dict[Task, tuple[Estimator, ...]] = {
    Task.CLASSIFICATION: (
        Estimator.RANDOM_FOREST,
        Estimator.EXTRA_TREES,
        Estimator.HIST_GRADIENT_BOOSTING,
        Estimator.LOGISTIC_REGRESSION,
    ),
    Task.REGRESSION: (
        Estimator.RANDOM_FOREST,
        Estimator.EXTRA_TREES,
        Estimator.HIST_GRADIENT_BOOSTING,
        Estimator.RIDGE,
    ),
}


class Metric(StrEnum):
    ACCURACY = "accuracy"
    F1_MACRO = "f1_macro"
    RMSE = "rmse"
    MAE = "mae"
    R2 = "r2"

    @property
    def higher_is_better(self) -> bool:
        return self not in {Metric.RMSE, Metric.MAE}

    def better_or_equal(self, score: float, than: float) -> bool:
        return score >= than if self.higher_is_better else score <= than

    @property
    def comparison(self) -> str:
        """How a score that clears a bound compares with it, in words: "≥" or "≤"."""
        return "≥" if self.higher_is_better else "≤"


METRICS: dict[Task, tuple[Metric, ...]] = {
    Task.CLASSIFICATION: (Metric.ACCURACY, Metric.F1_MACRO),
    Task.REGRESSION: (Metric.RMSE, Metric.MAE, Metric.R2),
}


class Gate(BaseModel):
    """A new version becomes champion when its `metric` clears `threshold` (if any) and
    is not worse than the champion's on the same held-out rows by more than `tolerance`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Metric
    threshold: float | None = Field(
        None, description="The bound the metric must clear (≥, or ≤ for rmse and mae)."
    )
    tolerance: float = Field(0.0, ge=0, description="How much worse than the champion passes.")


def default_gate(task: Task, *, accuracy_threshold: float, tolerance: float = 0.0) -> Gate:
    """Classification: accuracy ≥ the platform's threshold. Regression: r2 ≥ 0, that is
    no worse than predicting the mean."""
    if task is Task.CLASSIFICATION:
        return Gate(metric=Metric.ACCURACY, threshold=accuracy_threshold, tolerance=tolerance)
    return Gate(metric=Metric.R2, threshold=0.0, tolerance=tolerance)


class ModelSpec(BaseModel):
    """What training a model means: the part of a definition a job needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_uri: str = Field(min_length=1)
    target_column: str = Field(min_length=1)
    task: Task = Task.CLASSIFICATION
    estimator: Estimator = Estimator.RANDOM_FOREST
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Defaults for every training of the model."
    )
    gate: Gate
    retraining: RetrainingPolicy = Field(
        default_factory=RetrainingPolicy, description="When the platform retrains it."
    )

    @model_validator(mode="after")
    def _fits_the_task(self) -> ModelSpec:
        if self.estimator not in ESTIMATORS[self.task]:
            choices = ", ".join(ESTIMATORS[self.task])
            raise ValueError(f"estimator {self.estimator} is not for {self.task}; use {choices}")
        if self.gate.metric not in METRICS[self.task]:
            choices = ", ".join(METRICS[self.task])
            raise ValueError(
                f"gate metric {self.gate.metric} is not for {self.task}; use {choices}"
            )
        if self.retraining.on_live_below_gate and self.gate.threshold is None:
            raise ValueError("retraining on_live_below_gate needs a gate threshold to fall below")
        return self


class DefinitionChange(BaseModel):
    """One change of a model's definition: when, by whom, each field from what to what."""

    at: AwareDatetime
    by: str
    fields: dict[str, tuple[Any, Any]] = Field(description="field → [before, after].")


class ModelIdentity(BaseModel):
    """A model's name and where its versions and runs go in MLflow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    registered_model: str = Field(min_length=1)
    experiment: str = Field(min_length=1)


class ModelRef(ModelIdentity):
    """What a job must know of the model it trains: where its versions go and how they
    are built and judged."""

    task: Task
    estimator: Estimator
    gate: Gate


class ModelDefinition(ModelIdentity):
    """A model as stored: its spec, the MLflow registered model and experiment that hold
    its versions and runs, and when it was created, last changed and archived."""

    spec: ModelSpec
    created_at: AwareDatetime
    updated_at: AwareDatetime
    archived_at: AwareDatetime | None = None

    @classmethod
    def new(cls, identity: ModelIdentity, spec: ModelSpec, now: datetime) -> ModelDefinition:
        return cls(**identity.model_dump(), spec=spec, created_at=now, updated_at=now)

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def ref(self) -> ModelRef:
        spec = self.spec
        identity = self.model_dump(include=set(ModelIdentity.model_fields))
        return ModelRef(**identity, task=spec.task, estimator=spec.estimator, gate=spec.gate)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelDefinition:
        return cls.model_validate_json(text)

    def changed(self, spec: ModelSpec, at: datetime) -> ModelDefinition:
        return self.model_copy(update={"spec": spec, "updated_at": at})
