"""A model's retraining policy on the real platform: its champion wrong on live traffic
starts a training whose version, passing the gate, goes into an automatic canary; every
step is in the model's history and alerts. (Drift as a trigger: test_drift.py.)"""

from __future__ import annotations

import uuid

import httpx
import pytest
from helpers import wait_for, wait_for_job

from mlops.ml import data
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

SETOSA_ROW = [5.1, 3.5, 1.4, 0.2]
LIVE_RETRAINING = {
    "on_live_below_gate": True,
    "cooldown_minutes": 60,
    "canary": {"percent": 50, "max_hours": 1, "min_labels": 10},
}


def _iris_model(api: httpx.Client, settings: PlatformSettings, **fields) -> str:
    name = f"loop-{uuid.uuid4().hex[:6]}"
    path = settings.data_dir / f"{name}.csv"
    data.iris_frame().to_csv(path, index=False)
    body = {
        "name": name,
        "dataset_uri": str(path),
        "target_column": data.IRIS_TARGET,
        # The same trees every training: a retrained version ties with the champion.
        "hyperparameters": {"random_state": 0, "n_estimators": 20},
        **fields,
    }
    created = api.post("/models", json=body)
    assert created.status_code == 201, created.text
    return name


def _steps(api: httpx.Client, name: str) -> list[dict]:
    """The model's retraining steps, oldest first."""
    return api.get(f"/models/{name}/history").json()["retraining"][::-1]


def _step(api: httpx.Client, name: str, step: str) -> dict | None:
    return next((s for s in _steps(api, name) if s["step"] == step), None)


def test_a_champion_wrong_on_live_traffic_is_retrained_into_a_canary(
    api: httpx.Client, settings: PlatformSettings
) -> None:
    name = _iris_model(api, settings, retraining=LIVE_RETRAINING)
    accepted = api.post("/trigger_training", json={"model": name, "hyperparameters": {}})
    assert wait_for_job(api, accepted.json()["job_id"])["promoted"] is True
    replies = [
        wait_for(
            lambda: (
                (
                    r := api.post("/inference", json={"model": name, "input_data": SETOSA_ROW})
                ).status_code
                == 200
                and r.json()
            ),
            timeout=120,
            what="the champion to answer",
        )
        for _ in range(25)
    ]
    wrong = [{"prediction_id": r["prediction_id"], "label": "Virginica"} for r in replies]
    assert api.post("/feedback", json={"items": wrong}).status_code == 200

    canary = wait_for(
        lambda: _step(api, name, "canary_started"), timeout=180, what="the retrained canary"
    )
    started = _step(api, name, "started")
    job = api.get(f"/jobs/{canary['job_id']}").json()
    rollout = api.get(f"/models/{name}/rollouts").json()
    alerts = api.get("/alerts", params={"model": name, "limit": 50}).json()["alerts"]
    retraining_alerts = [a for a in alerts if a["kind"] == "retraining"]

    assert started and started["trigger"] == "live" and started["job_id"] == canary["job_id"]
    assert "canary" in started["detail"]
    assert job["source"] == "retraining:live" and job["status"] == "succeeded"
    assert job["promoted"] is False and job["held_for_rollout"] is True
    assert canary["version"] == job["model_version"] == "2"
    assert api.get(f"/models/{name}").json()["champion"]["version"] == "1"
    versions = api.get(f"/models/{name}/versions").json()["versions"]
    assert next(v for v in versions if v["version"] == "2")["promotion"] == "held for rollout"
    assert rollout["rollout"]["version"] == "2" and rollout["rollout"]["mode"] == "canary"
    assert rollout["rollout"]["auto"] is True and rollout["rollout"]["percent"] == 50
    assert [a["data"]["step"] for a in retraining_alerts] == ["started"]

    assert api.delete(f"/models/{name}/rollouts").status_code == 200
    ended = wait_for(lambda: _step(api, name, "canary_ended"), timeout=30, what="the end")
    assert "aborted" in ended["detail"] and ended["version"] == "2"
    assert [s["step"] for s in _steps(api, name)] == ["started", "canary_started", "canary_ended"]
    assert len(api.get("/jobs", params={"model": name}).json()["jobs"]) == 2


def test_a_retraining_policy_is_checked_and_changed_with_the_model(
    api: httpx.Client, settings: PlatformSettings
) -> None:
    name = _iris_model(api, settings)
    no_threshold = api.patch(
        f"/models/{name}",
        json={"gate": {"metric": "accuracy"}, "retraining": {"on_live_below_gate": True}},
    )
    bad_canary = api.patch(
        f"/models/{name}", json={"retraining": {"on_drift": True, "canary": {"percent": 0}}}
    )
    changed = api.patch(f"/models/{name}", json={"retraining": {"on_drift": True}})
    history = api.get(f"/models/{name}/history").json()

    assert no_threshold.status_code == 422
    assert "needs a gate threshold" in no_threshold.text
    assert no_threshold.json()["detail"][0]["loc"][-2:] == ["retraining", "on_live_below_gate"]
    assert bad_canary.status_code == 422 and "percent" in bad_canary.text
    assert changed.status_code == 200
    assert changed.json()["spec"]["retraining"]["on_drift"] is True
    assert changed.json()["spec"]["retraining"]["cooldown_minutes"] == 60
    assert history["definition_changes"][0]["fields"]["retraining"][1]["on_drift"] is True
