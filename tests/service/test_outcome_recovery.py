"""A job that ends during a Redis outage longer than it waits still gets its outcome.

The extra API and its training job reach the session's real Valkey through a TCP relay
the test can cut (the only stand-in here: it injects the outage). The relay is cut as
soon as the job is submitted, so the job trains, registers and promotes a version, and
gives up recording it after MLOPS_REDIS_WAIT_SECONDS (Ray shows the job failed). Once
the relay is back, the API's reconciler reads the outcome back from MLflow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import Relay, ray_headers, wait_for, wait_for_job

from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


@pytest.fixture()
def relay(settings: PlatformSettings) -> Iterator[Relay]:
    relay = Relay(urlsplit(settings.redis_url).port or 6379)
    relay.start()
    yield relay
    relay.stop()


def test_an_outcome_given_up_in_a_redis_outage_is_read_back_from_mlflow(
    start_api, settings: PlatformSettings, relay: Relay
) -> None:
    name = f"outage_{uuid.uuid4().hex[:8]}"
    api, _ = start_api(
        model_name=name,
        experiment_name=name,
        redis_url=f"redis://127.0.0.1:{relay.port}/15",
        redis_wait_seconds=2,
    )
    accepted = api.post("/trigger_training", json={"hyperparameters": {"random_state": 1}})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]

    relay.cut()
    ray_job = f"{settings.ray_address}/api/jobs/{job_id}"
    wait_for(
        lambda: httpx.get(ray_job, headers=ray_headers()).json()["status"] == "FAILED",
        timeout=180,
        what="the job to give up recording its outcome",
    )
    relay.restore()
    job = wait_for_job(api, job_id)

    assert job["status"] == "succeeded", job
    assert job["model_version"] and job["promoted"] is True
    assert job["accuracy"] == pytest.approx(0.9667, abs=1e-3)
    moves = api.get("/models/iris/history").json()["moves"]
    assert [(m["to_version"], m["by"]) for m in moves] == [(job["model_version"], job_id)]
    alerts = api.get("/alerts", params={"limit": 50}).json()["alerts"]
    recovered = [a for a in alerts if (a["data"] or {}).get("job_id") == job_id]
    assert len(recovered) == 1 and "read back from MLflow" in recovered[0]["text"]
