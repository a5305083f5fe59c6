"""Input drift on real parts: replicas sample what they serve, /drift and /watch_drift
judge the champion's recent inputs against its training profile.

The verdicts are measured on a synthetic dataset of 2,000 rows (iris's 30 test rows
are too few to stand for a distribution): rows drawn from its held-out part are
in-distribution traffic; the same rows with one feature moved by two standard
deviations are drift.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import numpy as np
import pandas as pd
import pytest
from helpers import on_redis_db, run_async, wait_for, wait_for_job

from mlops.clients.redis import DriftSamples, connect
from mlops.contracts.model_definition import Task
from mlops.ml import data, model
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

FEATURES = ["f1", "f2", "f3", "f4"]
ROWS_PER_CHECK = 500


def _dataset(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.normal([0, 5, -2, 10], [1, 2, 0.5, 3], size=(2000, 4)), columns=FEATURES
    )
    frame["label"] = np.select([frame.f1 < -0.5, frame.f1 < 0.5], ["low", "mid"], "high")
    return frame


@pytest.fixture()
def drift_api(start_api, settings: PlatformSettings):
    """An API whose champion was trained on the synthetic dataset; and a writer of
    "served" rows into its sample, as the replicas write them."""
    name = f"drift_{uuid.uuid4().hex[:8]}"
    frame = _dataset()
    path = settings.data_dir / f"{name}.csv"
    frame.to_csv(path, index=False)
    redis_db = 13
    api, _ = start_api(
        model_name=name,
        experiment_name=name,
        dataset_uri=str(path),
        target_column="label",
        redis_db=redis_db,
        drift_sample_rows=ROWS_PER_CHECK,
    )
    accepted = api.post("/trigger_training", json={"hyperparameters": {"random_state": 0}})
    job = wait_for_job(api, accepted.json()["job_id"])
    assert job["promoted"] is True, job
    features, labels = data.split_features(frame, "label")
    held_out = model.split(
        features,
        labels,
        task=Task.CLASSIFICATION,
        test_size=settings.test_size,
        seed=settings.random_seed,
    )
    mine = on_redis_db(settings, redis_db)

    def serve(rows: np.ndarray) -> None:
        async def write() -> None:
            redis = connect(mine)
            try:
                samples = DriftSamples(redis, max_rows=ROWS_PER_CHECK)
                await samples.append(name, {job["model_version"]: rows.tolist()})
            finally:
                await redis.aclose()

        run_async(write())

    return api, held_out.x_test.to_numpy(), serve


def _draw(held_out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return held_out[rng.integers(0, len(held_out), ROWS_PER_CHECK)]


def test_too_little_traffic_gives_no_verdict(drift_api) -> None:
    api, held_out, serve = drift_api
    serve(held_out[:20])

    report = api.get("/drift").json()

    assert report["verdict"] == "too little traffic"
    assert report["sample_size"] == 20 and report["min_rows"] == 200
    assert report["features"] == []


def test_in_distribution_traffic_gives_no_alarm_and_a_shift_names_its_feature(
    drift_api,
) -> None:
    api, held_out, serve = drift_api
    rng = np.random.default_rng(11)
    verdicts = []
    for _ in range(20):
        serve(_draw(held_out, rng))
        verdicts.append(api.get("/drift").json()["verdict"])

    shifted = _draw(held_out, rng)
    shifted[:, 2] += 2 * 0.5  # f3: two standard deviations
    serve(shifted)
    report = api.get("/drift").json()

    assert verdicts == ["no drift"] * 20  # no false alarm in 20 checks
    assert report["verdict"] == "drift"
    assert [f["feature"] for f in report["features"] if f["drifting"]] == ["f3"]
    assert report["detail"].startswith("Input drift on f3: PSI ")
    assert report["sample_size"] == ROWS_PER_CHECK


def _drift_alerts(api: httpx.Client, schedule_id: str) -> list[dict]:
    alerts = api.get("/alerts", params={"limit": 500}).json()["alerts"]
    return [a for a in alerts if (a["data"] or {}).get("schedule_id") == schedule_id]


def test_a_drift_watch_alerts_on_the_moved_feature_only(drift_api) -> None:
    api, held_out, serve = drift_api
    rng = np.random.default_rng(5)
    serve(_draw(held_out, rng))
    created = api.post("/watch_drift", json={"minutes": 1})
    schedule_id = created.json()["schedule_id"]
    runs: Callable[[], int] = lambda: next(  # noqa: E731
        s["runs"]
        for s in api.get("/scheduled_jobs").json()["schedules"]
        if s["schedule_id"] == schedule_id
    )
    wait_for(lambda: runs() >= 3, timeout=15, what="three drift checks")
    quiet = _drift_alerts(api, schedule_id)

    shifted = _draw(held_out, rng)
    shifted[:, 0] -= 2 * 1.0  # f1: two standard deviations
    serve(shifted)
    alert = wait_for(lambda: _drift_alerts(api, schedule_id), timeout=15, what="a drift alert")[0]

    assert created.status_code == 201 and created.json()["kind"] == "drift"
    assert created.json()["threshold"] == 0.2
    assert quiet == []
    assert alert["level"] == "warning" and alert["kind"] == "drift"
    assert alert["text"].startswith("Input drift on f1: PSI ")
    assert alert["data"]["features"] == ["f1"]
    assert api.delete(f"/kill_scheduled_job/{schedule_id}").status_code == 200


def test_a_drift_alert_retrains_a_model_whose_policy_says_so(drift_api) -> None:
    api, held_out, serve = drift_api
    policy = {"on_drift": True, "cooldown_minutes": 60}
    changed = api.patch(
        "/models/iris", json={"retraining": policy, "hyperparameters": {"random_state": 0}}
    )
    assert changed.status_code == 200, changed.text
    shifted = _draw(held_out, np.random.default_rng(3))
    shifted[:, 1] += 2 * 2.0  # f2: two standard deviations
    serve(shifted)
    created = api.post("/watch_drift", json={"minutes": 1})
    schedule_id = created.json()["schedule_id"]

    def steps() -> list[dict]:
        return api.get("/models/iris/history").json()["retraining"][::-1]

    wait_for(lambda: len(steps()) >= 2, timeout=120, what="a retraining's end")
    started, ended = steps()
    job = api.get(f"/jobs/{started['job_id']}").json()

    assert started["step"] == "started" and started["trigger"] == "drift"
    assert ended["step"] == "promoted" and ended["version"] == "2", ended
    assert job["source"] == "retraining:drift" and job["promoted"] is True
    assert api.delete(f"/kill_scheduled_job/{schedule_id}").status_code == 200


def test_replicas_sample_what_they_serve(api: httpx.Client, champion_served) -> None:
    row = {"input_data": [6.7, 3.0, 5.2, 2.3]}
    before = api.get("/drift").json()["sample_size"]

    for _ in range(30):
        assert api.post("/inference", json=row).status_code == 200

    # Replicas send their sample once a second, off the request path.
    wait_for(
        lambda: api.get("/drift").json()["sample_size"] >= min(before + 30, 5000),
        timeout=15,
        what="the served rows in the sample",
    )


@pytest.mark.parametrize(
    "body", [{"minutes": 0}, {"minutes": 5, "threshold": 0}, {"minutes": 5, "threshold": "x"}]
)
def test_a_bad_drift_watch_is_422(api: httpx.Client, body: dict) -> None:
    assert api.post("/watch_drift", json=body).status_code == 422
