"""Request and response models of the public API.

The request models keep the original design's fields (a public contract); the
responses are ours.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from mlops.cadence import cron_trigger, time_zone
from mlops.contracts.alerts import Alert
from mlops.contracts.champion import ChampionMove
from mlops.contracts.jobs import JobInfo, JobStatus
from mlops.contracts.model_definition import MODEL_NAME_PATTERN, DefinitionChange, Metric
from mlops.contracts.retraining import RetrainingStep
from mlops.contracts.serve import FLOAT32_MAX

DatasetUri = Annotated[
    str | None,
    Field(
        None,
        min_length=1,
        max_length=1024,
        description="CSV or Parquet to train on: an absolute path or s3:// URI inside the"
        " allowed locations (MLOPS_DATASET_LOCATIONS). Default: MLOPS_DATASET_URI.",
        examples=["s3://mlops/datasets/wine.parquet"],
    ),
]
TargetColumn = Annotated[
    str | None,
    Field(
        None,
        min_length=1,
        max_length=256,
        description="Its label column. Default: MLOPS_TARGET_COLUMN.",
    ),
]


ModelField = Annotated[
    str | None,
    Field(
        None,
        pattern=MODEL_NAME_PATTERN,
        description="The model (GET /models); default: the default model (MLOPS_DEFAULT_MODEL).",
        examples=["iris"],
    ),
]


class TrainingRequest(BaseModel):
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameters of the model's estimator over its defaults, e.g. "
        '{"n_estimators": 100}.',
        examples=[{"n_estimators": 100, "max_depth": 5}],
    )
    model: ModelField = None
    dataset_uri: DatasetUri = None
    target_column: TargetColumn = None


class TuneRequest(BaseModel):
    model: ModelField = None
    search_space: dict[str, dict[str, list[Any]]] = Field(
        description="A parameter of the model's estimator → one distribution: "
        '{"choice": [...]},'
        ' {"randint": [low, high]} (high excluded), {"uniform": [low, high]} or'
        ' {"loguniform": [low, high]}.',
        examples=[
            {
                "n_estimators": {"choice": [50, 100, 200]},
                "max_depth": {"randint": [2, 12]},
                "min_samples_leaf": {"randint": [1, 5]},
            }
        ],
    )
    trials: int = Field(8, ge=1, description="Configurations to try (≤ MLOPS_TUNE_MAX_TRIALS).")
    metric: Metric | None = Field(
        None,
        description="What picks the best trial (highest, or lowest for rmse and mae); "
        "default: the model's gate metric.",
    )
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Trials at once; default: as many as the cluster has CPUs."
    )
    dataset_uri: DatasetUri = None
    target_column: TargetColumn = None


# A schedule's period: a whole number of minutes from one to a week.
Minutes = Annotated[int, Field(strict=True, ge=1, le=10_080, description="1 to 10,080 (a week).")]


class Cadenced(BaseModel):
    """When a schedule runs: every `minutes`, or at the times of a `cron` expression in
    a `timezone`; exactly one of the two."""

    cron: str | None = Field(
        None,
        description="Crontab's five fields: minute hour day month weekday (0 and 7: Sunday).",
        examples=["0 2 * * *"],
    )
    timezone: str = Field("UTC", description="IANA time zone of `cron`.", examples=["UTC"])
    # After `cron`, whose value its check reads; checked even when not given.
    minutes: Minutes | None = Field(None, validate_default=True)

    @field_validator("cron")
    @classmethod
    def _readable_cron(cls, cron: str | None) -> str | None:
        if cron is not None:
            cron_trigger(cron, "UTC")
        return cron

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, timezone: str) -> str:
        time_zone(timezone)
        return timezone

    @field_validator("minutes")
    @classmethod
    def _minutes_or_cron(cls, minutes: int | None, info: ValidationInfo) -> int | None:
        if "cron" in info.data and (minutes is None) == (info.data["cron"] is None):
            raise ValueError("give exactly one of 'minutes' (1 to 10,080) and 'cron'")
        return minutes


class ScheduleTrainingRequest(Cadenced):
    model: ModelField = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict, examples=[{"n_estimators": 100}])
    dataset_uri: DatasetUri = None
    target_column: TargetColumn = None
    tune: TuneRequest | None = Field(
        None, description="Run this search each period instead of one training."
    )


class WatchModelRequest(Cadenced):
    model: ModelField = None


ScheduleKind = Literal["training", "watch", "drift"]


class ScheduleInfo(BaseModel):
    schedule_id: str
    model: str
    kind: ScheduleKind
    minutes: int | None = None
    cron: str | None = None
    timezone: str | None = Field(None, description="The time zone of `cron`.")
    hyperparameters: dict[str, Any] | None = None
    dataset_uri: str | None = None
    target_column: str | None = None
    tune: TuneRequest | None = Field(None, description="The search a training schedule runs.")
    threshold: float | None = Field(None, description="PSI threshold of a drift watch.")
    created_at: datetime
    next_run_time: datetime | None
    last_run_at: datetime | None = None
    runs: int = Field(0, description="Runs so far, across all API replicas.")


class ScheduleList(BaseModel):
    schedules: list[ScheduleInfo]


class ScheduleRemoved(BaseModel):
    schedule_id: str
    removed: Literal[True] = True


# The model computes in float32: a feature beyond its range cannot be represented.
Feature = Annotated[float, Field(allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]


class InferenceRequest(BaseModel):
    model: ModelField = None
    input_data: list[Feature] = Field(
        min_length=1,
        max_length=1000,
        description="One row of features, in the model's column order.",
        examples=[[5.1, 3.5, 1.4, 0.2]],
    )
    model_version: str | None = Field(
        None,
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="A registered version to use instead of the champion.",
    )
    retries: int | None = Field(3, ge=0, le=10, description="Retries of transient failures.")
    sla_seconds: int | None = Field(60, ge=1, le=600, description="Answer within this, or 504.")
    routing_key: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="During a canary, requests with the same key meet the same version "
        "(a user or session id); without one, the side is drawn at random.",
    )


class InferenceResponse(BaseModel):
    prediction: int | float = Field(
        description="Classification: index of the predicted class. Regression: the value."
    )
    label: str | None = Field(
        None, description="Classification: name of the predicted class, e.g. Setosa."
    )
    probabilities: dict[str, float] | None = Field(
        None, description="Classification: probability of each class."
    )
    model: str = Field(description="The model that answered.")
    model_version: str
    predictor: Literal["onnx", "sklearn"] = Field(description="Which form of the model answered.")
    prediction_id: str | None = Field(
        None,
        description="The recorded prediction: send its true outcome to POST /feedback "
        "(absent when MLOPS_RECORD_PREDICTIONS is off).",
        examples=["19aef3c2d410000000000000001"],
    )


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str


class JobList(BaseModel):
    jobs: list[JobInfo]


class LatestModel(BaseModel):
    version: str
    accuracy: float | None = Field(description="Classification: its held-out accuracy.")
    score: float | None = Field(None, description="Its held-out score on the gate's metric.")
    trained_at: datetime
    is_champion: bool
    run_id: str | None


class MetricsResponse(BaseModel):
    model: str
    metric: Metric = Field(description="The model's gate metric, which the averages are of.")
    latest_model: LatestModel | None
    champion_version: str | None = Field(description="Version the champion alias points at.")
    weekly_average: float | None = Field(
        description="Mean score of the training runs of the last 7 days."
    )
    daily_average: dict[str, float] = Field(
        description="Mean score per day (YYYY-MM-DD, UTC) over the last 7 days."
    )
    avg_accuracy_last_7_days: dict[str, float] = Field(
        description="Mean accuracy per day (YYYY-MM-DD, UTC) over the last 7 days (models "
        "gated on accuracy; others: daily_average)."
    )
    runs: list[RunPoint] = Field(description="Each run of the last 7 days, oldest first.")


class RunPoint(BaseModel):
    run_id: str
    started_at: datetime
    score: float = Field(description="On the model's gate metric.")
    accuracy: float | None = None


class AlertList(BaseModel):
    alerts: list[Alert]


class ChampionHistory(BaseModel):
    moves: list[ChampionMove] = Field(description="Newest first.")
    definition_changes: list[DefinitionChange] = Field(
        default_factory=list, description="Changes of the model's definition, newest first."
    )
    retraining: list[RetrainingStep] = Field(
        default_factory=list, description="Steps of its retraining policy, newest first."
    )


Reason = Annotated[str, Field(min_length=1, max_length=500, examples=["bad predictions"])]


class PromoteRequest(BaseModel):
    reason: Reason


class RollbackRequest(BaseModel):
    reason: Reason


class ModelVersionInfo(BaseModel):
    version: str
    created_at: datetime
    scores: dict[str, float] = Field(
        default_factory=dict, description="Every metric of the model's task, held out."
    )
    accuracy: float | None
    f1_macro: float | None
    job_id: str | None
    aliases: list[str]
    promotion: Literal["promoted", "not promoted", "held for rollout"] | None = Field(
        description="The training job's decision (None for versions registered elsewhere)."
    )
    promotion_reason: str | None
    features: list[str] = Field(description="Input columns, in order.")
    classes: list[str]
    foreign: str | None = Field(
        None,
        description="Why the platform will not serve, score or promote this version (it "
        "did not register it, or it changed since); null for the platform's own.",
    )


class ModelList(BaseModel):
    model: str
    champion_version: str | None
    versions: list[ModelVersionInfo] = Field(description="Newest first.")


class WatchDriftRequest(Cadenced):
    model: ModelField = None
    threshold: float | None = Field(
        None, gt=0, le=10, description="PSI at which a feature drifts (default: settings)."
    )


class FeatureDriftInfo(BaseModel):
    feature: str
    psi: float = Field(description="Population stability index over the training deciles.")
    ks_statistic: float
    ks_pvalue: float
    drifting: bool


class DriftReport(BaseModel):
    model: str | None = Field(None, description="The model checked.")
    model_version: str | None = Field(description="The champion checked.")
    verdict: Literal["drift", "no drift", "too little traffic", "no champion", "no reference"]
    detail: str
    sample_size: int = Field(description="Recent rows the champion served, in the check.")
    min_rows: int = Field(description="Rows needed before a verdict is given.")
    threshold: float
    checked_at: datetime
    features: list[FeatureDriftInfo]


class DependencyState(BaseModel):
    ok: bool
    detail: str


class LoopState(BaseModel):
    running: bool = Field(description="False while it waits to be started again.")
    last_completed_at: datetime | None = Field(
        None, description="When it last completed a round of its work."
    )
    restarts: int = Field(description="Times it died and was started again.")
    last_error: str | None = Field(None, description="Why it last died.")


class ReadyResponse(BaseModel):
    ready: bool
    dependencies: dict[str, DependencyState]
    loops: dict[str, LoopState] = Field(
        default_factory=dict, description="The API's background loops, by name."
    )


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ErrorResponse(BaseModel):
    detail: str


MetricsResponse.model_rebuild()


QuarantinedRecordKind = Literal["job", "schedule"]


class QuarantinedRecord(BaseModel):
    kind: QuarantinedRecordKind
    record_id: str
    reason: str = Field(description="Why it was moved aside.")
    quarantined_at: datetime
    fields: dict[str, str] = Field(description="Its fields as they were in Redis, unparsed.")


class QuarantineList(BaseModel):
    records: list[QuarantinedRecord]
