"""The job record: what the API writes when it admits a job, what the job (in Ray) and
the API's reconciler write as it runs and ends, and what every reader parses.

Redis holds it as one hash per job, a JSON value per field. `JobInfo` is the whole
record; each writer's part is a TypedDict of its own fields, so mypy checks the names a
writer uses against these, and `tests/service/test_job_contract.py` checks that every
part's fields are the record's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, TypedDict

from pydantic import AwareDatetime, BaseModel, Field, model_validator


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        return self in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


JobKind = Literal["training", "tune"]

# Where a training's time goes, in order: admission to Ray accepting the job (queued),
# to the job's own code running (job_start: Ray starting its driver), then its work,
# then its outcome written (recording). Seconds each, on the job record (`phases`).
PHASES = (
    "queued",
    "job_start",
    "data",
    "fit",
    "evaluation",
    "gate",
    "compilation",
    "registration",
    "recording",
)


class JobInfo(BaseModel):
    job_id: str
    kind: JobKind = "training"
    model: str | None = Field(
        None, description="The model it trains (absent on jobs from before models had names)."
    )
    status: JobStatus
    hyperparameters: dict[str, Any] = Field(
        description="What it trained with; for a search, the best trial's once it ends."
    )
    source: str = Field(description="Who asked: `api` or a schedule id.")
    dataset_uri: str | None = None
    target_column: str | None = None
    cpus: int | None = Field(None, description="CPUs its trees were built on.")
    fit_seconds: float | None = Field(None, description="How long the fit itself took.")
    search_space: dict[str, Any] | None = None
    metric: str | None = Field(None, description="What picks a search's best trial.")
    trials_total: int | None = None
    trials_finished: int | None = Field(None, description="Trials that reported a score.")
    trials_failed: int | None = None
    best_score: float | None = Field(None, description="A search's best score so far.")
    created_at: AwareDatetime
    accepted_at: AwareDatetime | None = Field(None, description="When Ray accepted the job.")
    started_at: AwareDatetime | None = None
    began_at: AwareDatetime | None = Field(
        None, description="When the job's own code began (after Ray started its driver)."
    )
    finished_at: AwareDatetime | None = None
    phases: dict[str, float] | None = Field(
        None,
        description="Seconds each phase took, in order: queued, job_start, data, fit, "
        "evaluation, gate, compilation, registration, recording (those it went through).",
    )
    recording_seconds: float | None = Field(
        None, description="How long writing its outcome took (shown in `phases`)."
    )
    run_id: str | None = Field(None, description="MLflow run id.")
    model_version: str | None = Field(None, description="Registered model version.")
    scores: dict[str, float] | None = Field(
        None, description="Every metric of the model's task on the held-out rows."
    )
    accuracy: float | None = Field(None, description="Classification: held-out accuracy.")
    f1_macro: float | None = Field(None, description="Classification: held-out macro F1.")
    gate_metric: str | None = Field(None, description="The metric the gate judged.")
    promoted: bool | None = Field(None, description="Whether this version became champion.")
    promotion_reason: str | None = Field(None, description="Why it was, or was not, promoted.")
    held_for_rollout: bool | None = Field(
        None, description="Passed the gate and left for a canary rollout to promote."
    )
    champion_version: str | None = Field(
        None, description="The champion it was compared with on the same test rows."
    )
    champion_score: float | None = Field(
        None, description="That champion's score on the gate's metric, on the same test rows."
    )
    champion_accuracy: float | None = Field(
        None, description="That champion's accuracy on the same test rows (accuracy gates)."
    )
    error: str | None = None

    @model_validator(mode="after")
    def _all_phases(self) -> JobInfo:
        """`phases` with those the job could not time itself: queued and job_start
        from the record's times, recording from its own field; in PHASES order."""
        found = dict(self.phases or {})
        if self.accepted_at is not None:
            found["queued"] = (self.accepted_at - self.created_at).total_seconds()
            if self.began_at is not None:
                found["job_start"] = (self.began_at - self.accepted_at).total_seconds()
        if self.recording_seconds is not None:
            found["recording"] = self.recording_seconds
        if found:
            ordered = {name: round(found[name], 3) for name in PHASES if name in found}
            self.phases = ordered
        return self


class NewJob(TypedDict, total=False):
    """What the API records when it admits a job (with its id, status and time)."""

    kind: JobKind
    model: str
    hyperparameters: dict[str, Any]
    source: str
    dataset_uri: str
    target_column: str
    search_space: dict[str, Any]
    metric: str
    trials_total: int
    trials_finished: int
    trials_failed: int


class SearchProgress(TypedDict, total=False):
    """How far a search is, as it reports while its trials run."""

    trials_finished: int
    trials_failed: int
    best_score: float | None


class JobOutcome(TypedDict, total=False):
    """How a job ended (with its status), from the job itself or the reconciler."""

    began_at: str
    finished_at: str
    phases: dict[str, float]
    run_id: str | None
    model_version: str | None
    scores: dict[str, float]
    accuracy: float | None
    f1_macro: float | None
    gate_metric: str
    promoted: bool | None
    promotion_reason: str | None
    held_for_rollout: bool
    champion_version: str | None
    champion_score: float | None
    champion_accuracy: float | None
    error: str | None
    # A training's fit, or a search's best trial:
    hyperparameters: dict[str, Any]
    cpus: int
    fit_seconds: float
    trials_finished: int
    trials_failed: int
    best_score: float | None
