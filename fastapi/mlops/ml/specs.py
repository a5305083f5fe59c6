"""What a job was asked to do, as the API submits it and the code in Ray reads it
(JSON on the job's command line; the job record holds the same fields)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainingSpec:
    job_id: str
    hyperparameters: dict[str, Any]
    dataset_uri: str
    target_column: str

    def as_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainingSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class SearchSpec:
    """A hyperparameter search: `search_space` maps a RandomForestClassifier parameter
    to one distribution, {"choice": [...]}, {"randint": [low, high]} (high excluded),
    {"uniform": [low, high]} or {"loguniform": [low, high]}."""

    job_id: str
    search_space: dict[str, dict[str, list[Any]]]
    trials: int
    metric: str
    dataset_uri: str
    target_column: str
    max_concurrent_trials: int | None = None
    fixed: dict[str, Any] = field(default_factory=dict)  # parameters every trial gets

    def as_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SearchSpec:
        return cls(**json.loads(text))
