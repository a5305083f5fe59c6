"""The platform when its parts fail, each fault made real: servers stopped and restarted,
a training job killed mid-run, the API restarted. docs/reliability.md lists them.

The Redis and MLflow faults use servers of their own (started here as `make up` starts
them), so stopping them leaves the session's platform to the other tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from helpers import SseReader, free_port, ray_headers, wait_for, wait_for_job
from sklearn.datasets import make_classification

from mlops.local import components
from mlops.local.supervisor import Running, Supervisor
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


@pytest.fixture()
def own(
    settings: PlatformSettings, tmp_path: Path
) -> Iterator[tuple[Supervisor, PlatformSettings]]:
    """A supervisor for servers this test may stop, and settings naming them."""
    supervisor = Supervisor(tmp_path / "logs")
    mine = settings.model_copy(
        update={
            "data_dir": tmp_path,
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}",
        }
    )
    yield supervisor, mine
    supervisor.stop_all()


def _start(supervisor: Supervisor, component) -> Running:
    running = supervisor.start(component)
    supervisor.wait_ready([running], timeout=90)
    return running


def _ray_status(settings: PlatformSettings, job_id: str) -> str:
    return httpx.get(f"{settings.ray_address}/api/jobs/{job_id}", headers=ray_headers()).json()[
        "status"
    ]


def _ray_logs(settings: PlatformSettings, job_id: str) -> str:
    return (
        httpx.get(f"{settings.ray_address}/api/jobs/{job_id}/logs", headers=ray_headers())
        .json()
        .get("logs", "")
    )


def _alerts_for(api: httpx.Client, job_id: str) -> list[dict]:
    response = api.get("/alerts", params={"limit": 1000})
    assert response.status_code == 200, response.text
    alerts = response.json()["alerts"]
    return [a for a in alerts if (a["data"] or {}).get("job_id") == job_id]


def test_a_redis_outage_loses_no_alert_and_sse_clients_come_back(
    own, settings: PlatformSettings, start_api
) -> None:
    supervisor, mine = own
    redis = _start(supervisor, components.valkey(mine))
    api, _ = start_api(redis_url=mine.redis_url, experiment_name="redis-outage")
    reader = SseReader(f"{api.base_url}/webhook", reconnect=True)
    reader.next("ready")
    job_id = api.post("/trigger_training", json={"hyperparameters": {"n_estimators": 10}}).json()[
        "job_id"
    ]

    supervisor.stop(redis)  # the job trains on, and finishes, while Redis is down
    during = (api.get("/ready"), api.get("/health"), api.post("/trigger_training", json={}))
    wait_for(
        lambda: "recording the outcome in Redis failed" in _ray_logs(settings, job_id),
        timeout=120,
        what="the job to finish training and wait for Redis",
    )
    redis = _start(supervisor, components.valkey(mine))

    job = wait_for_job(api, job_id, timeout=180)
    alert = reader.next("message", timeout=60)
    ready, health, trigger = during
    assert ready.status_code == 503 and ready.json()["dependencies"]["redis"]["ok"] is False
    assert health.status_code == 200
    assert trigger.status_code == 503 and "Redis is unavailable" in trigger.json()["detail"]
    assert job["status"] == "succeeded"
    assert alert.json()["data"]["job_id"] == job_id
    assert len(_alerts_for(api, job_id)) == 1  # delivered once, not lost, not doubled
    assert api.get("/ready").status_code == 200
    reader.close()


def test_mlflow_down_is_503_for_metrics_and_training(own, start_api) -> None:
    supervisor, mine = own
    mlflow = _start(supervisor, components.mlflow(mine))
    api, _ = start_api(mlflow_tracking_uri=mine.mlflow_tracking_uri, redis_db=10)
    assert api.get("/get_metrics").status_code == 200
    jobs_before = api.get("/jobs").json()["jobs"]

    supervisor.stop(mlflow)
    metrics = api.get("/get_metrics")
    training = api.post("/trigger_training", json={"hyperparameters": {}})

    for response in (metrics, training):
        assert response.status_code == 503
        assert response.json()["detail"].startswith("MLflow is unavailable")
        assert "MLOPS_MLFLOW_TRACKING_URI" in response.json()["detail"]
    assert api.get("/jobs").json()["jobs"] == jobs_before  # no job was created
    assert api.get("/ready").json()["dependencies"]["mlflow"]["ok"] is False


def test_a_training_stopped_in_ray_ends_with_an_alert_and_registers_nothing(
    api: httpx.Client, settings: PlatformSettings
) -> None:
    # A fit of several seconds: the stop comes while it runs, as `ray job stop` would.
    name = f"slow-{uuid.uuid4().hex[:6]}"
    x, y = make_classification(n_samples=60_000, n_features=20, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)]).assign(label=y)
    path = settings.data_dir / f"{name}.parquet"
    frame.to_parquet(path)
    body = {"name": name, "dataset_uri": str(path), "target_column": "label"}
    assert api.post("/models", json=body).status_code == 201
    accepted = api.post(
        "/trigger_training", json={"model": name, "hyperparameters": {"n_estimators": 300}}
    )
    job_id = accepted.json()["job_id"]
    wait_for(lambda: _ray_status(settings, job_id) == "RUNNING", timeout=60, what="the job")

    httpx.post(
        f"{settings.ray_address}/api/jobs/{job_id}/stop", headers=ray_headers()
    ).raise_for_status()

    job = wait_for_job(api, job_id, timeout=60)
    assert job["status"] in {"stopped", "failed"}
    assert job["error"] and job["model_version"] is None
    alert = wait_for(lambda: _alerts_for(api, job_id), timeout=15, what="the job's alert")[0]
    assert alert["level"] in {"warning", "error"} and job_id in alert["text"]
    # The work in the trainer ended too, at its next phase, whether or not the stop
    # came before the entrypoint could pass it on: its own outcome (the phases it
    # timed) says stopped, and nothing is registered.
    ended = wait_for(
        lambda: "data" in ((found := api.get(f"/jobs/{job_id}").json())["phases"] or {}) and found,
        timeout=180,
        what="the work in the trainer to end",
    )
    assert ended["status"] == "stopped" and ended["model_version"] is None, ended
    assert "stopped in Ray" in ended["error"]
    assert api.get(f"/models/{name}/versions").json()["versions"] == []


def _schedules(api: httpx.Client) -> set[tuple]:
    """What defines each schedule (its run count moves on by itself)."""
    listed = api.get("/scheduled_jobs").json()["schedules"]
    return {(s["schedule_id"], s["kind"], s["minutes"], s["created_at"]) for s in listed}


def test_an_api_restart_keeps_jobs_alerts_and_schedules(start_api) -> None:
    api, running = start_api(redis_db=11, schedule_minute_seconds=60)
    job_id = api.post("/trigger_training", json={"hyperparameters": {"n_estimators": 5}}).json()[
        "job_id"
    ]
    wait_for_job(api, job_id)
    wait_for(lambda: _alerts_for(api, job_id), timeout=15, what="the job's alert")
    schedule_id = api.post("/watch_model", json={"minutes": 30}).json()["schedule_id"]
    before = (api.get("/jobs").json(), api.get("/alerts").json(), _schedules(api))

    running.process.terminate()
    running.process.wait(30)
    restarted, _ = start_api(redis_db=11, schedule_minute_seconds=60)

    after = (restarted.get("/jobs").json(), restarted.get("/alerts").json(), _schedules(restarted))
    assert after == before
    assert job_id in {j["job_id"] for j in after[0]["jobs"]}
    assert schedule_id in {s[0] for s in after[2]}
    restarted.delete(f"/kill_scheduled_job/{schedule_id}")


def test_with_redis_down_predictions_are_answered_and_feedback_is_503(own, start_api) -> None:
    """The API's Redis down. The replicas record into the session's Redis, which stays
    up here: their recording through an outage is test_feedback.py's, with a real
    Valkey refusing."""
    supervisor, mine = own
    redis = _start(supervisor, components.valkey(mine))
    api, _ = start_api(redis_url=mine.redis_url)
    row = {"input_data": [6.7, 3.0, 5.2, 2.3]}
    if api.post("/inference", json=row).status_code == 503:  # no champion yet this session
        job_id = api.post("/trigger_training", json={"hyperparameters": {}}).json()["job_id"]
        wait_for_job(api, job_id)
    first = wait_for(
        lambda: (r := api.post("/inference", json=row)).is_success and r.json(),
        timeout=180,
        what="a champion served",
    )

    supervisor.stop(redis)
    during = [api.post("/inference", json=row) for _ in range(20)]
    label = {"prediction_id": first["prediction_id"], "label": "Virginica"}
    feedback = api.post("/feedback", json=label)

    assert [r.status_code for r in during] == [200] * 20, [r.text for r in during]
    assert len({r.json()["prediction_id"] for r in during}) == 20
    assert feedback.status_code == 503 and "Redis" in feedback.json()["detail"]
