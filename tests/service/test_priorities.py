"""Serving comes first where it shares the CPUs with training (one `make up` machine)."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest
from helpers import component_process, wait_for_job

from mlops.local.platform import LocalPlatform
from mlops.ml.niceness import session_group_niceness
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


def _ray_processes(platform: LocalPlatform, title: str) -> list[psutil.Process]:
    found = []
    for process in component_process(platform, "ray").children(recursive=True):
        try:
            if " ".join(process.cmdline()).startswith(title):
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def _session_niceness(process: psutil.Process) -> int | None:
    group = Path(f"/proc/{process.pid}/autogroup")
    return session_group_niceness(group.read_text()) if group.exists() else None


@pytest.mark.usefixtures("champion_served")
def test_replicas_run_before_training_and_mlflow_yields(
    api: httpx.Client, platform: LocalPlatform, settings: PlatformSettings
) -> None:
    job = api.post("/trigger_training", json={"hyperparameters": {"n_estimators": 10}}).json()
    wait_for_job(api, job["job_id"])

    # Ray runs its workers at niceness 15 by default, but each job's supervisor at 0:
    # the replicas are at 0, so a job's start never comes before them.
    replicas = _ray_processes(platform, "ray::ServeReplica:models")
    assert replicas and {replica.nice() for replica in replicas} == {0}
    trainers = _ray_processes(platform, "ray::Trainer")
    assert trainers and all(t.nice() >= settings.training_niceness for t in trainers)
    # MLflow's server mostly works for trainings: it yields, in its own session too.
    mlflow = component_process(platform, "mlflow")
    assert mlflow.nice() == settings.training_niceness
    assert _session_niceness(mlflow) in (None, settings.training_niceness)
