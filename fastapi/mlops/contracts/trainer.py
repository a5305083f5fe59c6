"""The warm trainer as the API and the code in Ray both know it: its name, and a job (a
training or a search) the API hands it through Redis the moment Ray has accepted it.

The Ray job stays the job's record in Ray (its dashboard lists it, its log shows the
work, its exit code is the work's): its entrypoint attaches to the work in the
trainer, or starts it there if the trainer had not taken it. Only the start no
longer waits for Ray to launch the entrypoint (a second or more on two busy cores).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from mlops.contracts.jobs import JobKind

NAMESPACE = "mlops"


# In a job's environment: the name of the trainer the API handed the job to. The job's
# entrypoint attaches to that one, whatever name its own code would give: the code on
# disk may have changed since the API started (a package edited under `make up`).
TRAINER_ENV = "MLOPS_TRAINER"


def trainer_name(tracking_uri: str) -> str:
    """Named by the tracking server (MLflow's tracking URI is per process) and by a
    digest of this package's code, so a changed package gets a fresh trainer (and its
    own queue: a training is taken only by the code that submitted it). The API names
    it; a job submitted without the name (TRAINER_ENV) names it from its own code."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(tracking_uri.encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    return f"trainer-{digest.hexdigest()[:16]}"


class QueuedJob(BaseModel):
    """A job for the trainer: its job id, its MLOPS_* variables (secrets stay on the
    trainer's node), its kind and its spec as JSON (`ml.specs.TrainingSpec`, or
    `ml.specs.SearchSpec` for a search)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    env: dict[str, str]
    spec: str
    kind: JobKind = "training"
