"""Jobs the cluster cannot place, jobs that run too long, and a two-CPU cluster whose two
Serve replicas leave room for a search: real Ray, MLflow and Valkey.

A Tune trial reserves one CPU. On a cluster whose replicas hold every CPU, a search
would wait for ever and keep its admission slot; it is refused up front instead, and
any job past MLOPS_JOB_MAX_SECONDS is stopped in Ray and marked failed.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import api_client, platform_settings, ray_headers, wait_for, wait_for_job

from mlops.local import scratch
from mlops.local.platform import LocalPlatform, isolated_ray_ports
from mlops.settings.platform import PlatformSettings

pytestmark = [pytest.mark.platform, pytest.mark.slow]  # a platform of its own, too

SEARCH = {"search_space": {"max_depth": {"randint": [2, 6]}}, "trials": 2}


def _own_model(start_api, redis_db: int, **overrides) -> httpx.Client:
    name = f"cap_{uuid.uuid4().hex[:8]}"
    api, _ = start_api(redis_db=redis_db, model_name=name, experiment_name=name, **overrides)
    return api


def test_a_search_no_trial_of_which_fits_is_refused_with_the_numbers(start_api) -> None:
    # The session's Ray has 4 CPUs; four replicas of one CPU would hold them all.
    api = _own_model(start_api, redis_db=15, serve_replicas=4, serve_replica_cpus=1.0)

    refused = api.post("/tune", json=SEARCH)

    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "those have 4 CPUs and Serve's 4 replicas hold 4 of them (1 each), leaving 0" in detail
    assert "MLOPS_SERVE_REPLICA_CPUS" in detail
    assert api.get("/jobs").json()["jobs"] == []  # nothing recorded, no slot taken


def test_a_job_past_its_maximum_run_time_is_stopped_and_frees_its_slot(
    start_api, settings: PlatformSettings
) -> None:
    api = _own_model(
        start_api,
        redis_db=15,
        job_max_seconds=3,
        tune_time_budget_seconds=2.5,  # below the maximum, as the settings require
        max_active_trainings=1,
    )
    accepted = api.post("/tune", json=SEARCH)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]

    job = wait_for_job(api, job_id, timeout=60)

    assert job["status"] == "failed"
    assert "stopped after running longer than MLOPS_JOB_MAX_SECONDS=3 s" in job["error"]
    ray_job = f"{settings.ray_address}/api/jobs/{job_id}"
    wait_for(
        lambda: httpx.get(ray_job, headers=ray_headers()).json()["status"] == "STOPPED",
        timeout=30,
        what="Ray to stop the job",
    )
    again = api.post("/trigger_training", json={"hyperparameters": {}})
    assert again.status_code == 202, again.text  # the slot is free again


@pytest.fixture(scope="module")
def two_cpu_platform(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[httpx.Client]:
    """A platform of its own on a two-CPU Ray head with two Serve replicas, as the
    cluster is sized (manifests/api/configmap.yaml)."""
    folder: Path = tmp_path_factory.mktemp("two-cpus")
    settings = platform_settings(folder, ray_cpus=2, serve_replicas=2)
    running = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
    running.start(timeout=240)
    try:
        with api_client(f"http://{settings.api_host}:{settings.api_port}") as api:
            yield api
    finally:
        running.stop()
        if request.session.testsfailed == 0:  # kept for a look when a test failed
            shutil.rmtree(scratch.platform_folder(settings), ignore_errors=True)


def test_on_two_cpus_with_two_replicas_a_search_finishes_and_training_is_still_admitted(
    two_cpu_platform: httpx.Client,
) -> None:
    api = two_cpu_platform
    first = wait_for_job(
        api, api.post("/trigger_training", json={"hyperparameters": {}}).json()["job_id"]
    )
    assert first["status"] == "succeeded", first
    wait_for(
        lambda: api.post("/inference", json={"input_data": [5.1, 3.5, 1.4, 0.2]}).is_success,
        timeout=180,
        what="both replicas to serve the champion",
    )

    search = api.post("/tune", json=SEARCH)
    assert search.status_code == 202, search.text
    searched = wait_for_job(api, search.json()["job_id"], timeout=400)

    assert searched["status"] == "succeeded", searched
    assert searched["trials_finished"] == 2
    after = api.post("/trigger_training", json={"hyperparameters": {}})
    assert after.status_code == 202, after.text
    assert wait_for_job(api, after.json()["job_id"])["status"] == "succeeded"
