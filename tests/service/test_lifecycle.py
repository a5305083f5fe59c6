"""The model lifecycle on real parts: the promotion gate (champion vs challenger),
promote, roll back and history, serving following a rollback.

Each test that moves a champion uses a model name of its own, so the session's
champion (what the other tests serve) does not move under them. On iris's 30 test rows
forests score 0.867 to 0.967; the seeds below pin each score.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from helpers import PredictionLoad, api_client, run_cli, wait_for, wait_for_job
from mlflow import MlflowClient

from mlops.ml import data
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

BEST = {"random_state": 1}  # 0.967: clears the gate whatever the champion
ALSO_BEST = {"n_estimators": 5, "random_state": 0}  # 0.967, another forest
WEAK = {"max_depth": 1, "n_estimators": 1, "random_state": 0}  # 0.667


def _train(api: httpx.Client, hyperparameters: dict) -> dict:
    accepted = api.post("/trigger_training", json={"hyperparameters": hyperparameters})
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(api, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


def _alerts(api: httpx.Client, kind: str) -> list[dict]:
    return [
        a for a in api.get("/alerts", params={"limit": 200}).json()["alerts"] if a["kind"] == kind
    ]


@pytest.fixture()
def own_model(start_api):
    """An API whose model name (and Redis database) no other test uses."""

    def start(**overrides):
        name = f"gate_{uuid.uuid4().hex[:8]}"
        values = {"model_name": name, "experiment_name": name, "redis_db": 12, **overrides}
        api, _ = start_api(**values)
        return api, name

    return start


def test_a_worse_challenger_is_registered_but_not_promoted_saying_why(
    own_model, settings: PlatformSettings
) -> None:
    # A threshold the weak forest clears, so only the comparison can stop it.
    api, name = own_model(accuracy_threshold=0.5)
    first = _train(api, BEST)

    second = _train(api, WEAK)

    assert first["promoted"] is True
    assert first["promotion_reason"] == "accuracy 0.967 ≥ threshold 0.5; no champion yet"
    assert second["promoted"] is False
    assert second["champion_version"] == first["model_version"]
    assert second["champion_accuracy"] == pytest.approx(first["accuracy"])
    reason = (
        f"accuracy 0.667 < champion version {first['model_version']}'s 0.967 "
        "on the same 30 test rows"
    )
    assert second["promotion_reason"] == reason
    registry = MlflowClient(settings.mlflow_tracking_uri)
    assert registry.get_model_version_by_alias(name, "champion").version == first["model_version"]
    tags = registry.get_model_version(name, second["model_version"]).tags
    assert tags["mlops.promotion"] == "not promoted"
    assert tags["mlops.promotion_reason"] == reason
    alert = next(a for a in _alerts(api, "training") if a["data"]["job_id"] == second["job_id"])
    assert alert["level"] == "warning"
    assert f"not promoted: {reason}" in alert["text"]


def test_a_champion_that_cannot_be_scored_leaves_the_threshold_to_decide(
    own_model, settings: PlatformSettings
) -> None:
    api, _ = own_model()
    iris_champion = _train(api, BEST)
    # The model redefined on three of iris's four columns.
    narrower = data.iris_frame().drop(columns=["sepal.width"])
    dataset = settings.data_dir / f"narrow-{uuid.uuid4().hex[:6]}.csv"
    narrower.to_csv(dataset, index=False)
    patched = api.patch("/models/iris", json={"dataset_uri": str(dataset)})
    assert patched.status_code == 200, patched.text

    job = _train(api, BEST)
    history = api.get("/models/iris/history").json()

    assert job["promoted"] is True
    assert job["champion_version"] == iris_champion["model_version"]
    assert job["champion_accuracy"] is None
    assert (
        f"champion version {iris_champion['model_version']} could not be scored on these rows "
        "(other features: sepal.length, sepal.width, petal.length, petal.width), "
        "so the threshold alone decided"
    ) in job["promotion_reason"]
    assert str(dataset) in json.dumps(history)  # the redefinition, in the model's history


def test_promote_roll_back_and_the_history_of_every_move(own_model) -> None:
    api, name = own_model()
    v1 = _train(api, BEST)["model_version"]
    v2 = _train(api, ALSO_BEST)["model_version"]  # as good: promoted

    again = api.post(f"/models/iris/versions/{v2}/promote", json={"reason": "again"})
    unknown = api.post("/models/iris/versions/999/promote", json={"reason": "no such"})
    no_reason = api.post(f"/models/iris/versions/{v1}/promote", json={})
    back = api.post("/models/iris/rollback", json={"reason": "bad predictions in the shop"})
    nothing_before = api.post("/models/iris/rollback", json={"reason": "further"})
    forward = api.post(f"/models/iris/versions/{v2}/promote", json={"reason": "fixed upstream"})
    history = api.get("/models/iris/history").json()["moves"]
    listed = api.get("/models/iris/versions").json()

    assert again.status_code == 409 and "already the champion" in again.json()["detail"]
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "iris has no version '999'"  # not the registry's name
    assert no_reason.status_code == 422
    assert back.status_code == 200, back.text
    assert back.json()["from_version"] == v2 and back.json()["to_version"] == v1
    assert nothing_before.status_code == 409, nothing_before.text
    assert forward.status_code == 200
    assert [(m["action"], m["from_version"], m["to_version"], m["by"]) for m in history] == [
        ("promote", v1, v2, "api"),
        ("rollback", v2, v1, "api"),
        ("promote", v1, v2, history[2]["by"]),
        ("promote", None, v1, history[3]["by"]),
    ]
    assert history[2]["by"].startswith("train-") and history[3]["by"].startswith("train-")
    assert history[1]["reason"] == "bad predictions in the shop"
    assert listed["champion_version"] == v2
    newest, oldest = listed["versions"][0], listed["versions"][-1]
    assert (newest["version"], newest["aliases"], newest["promotion"]) == (
        v2,
        ["champion"],
        "promoted",
    )
    assert oldest["accuracy"] == pytest.approx(0.9667, abs=1e-3)
    assert oldest["job_id"].startswith("train-") and oldest["features"] == data.IRIS_FEATURES
    manual = _alerts(api, "champion")
    assert len(manual) == 2
    assert "rolled back by hand from version" in manual[1]["text"]
    assert "bad predictions in the shop" in manual[1]["text"]


def test_serving_follows_a_rollback_with_zero_failed_requests(
    api: httpx.Client, api_url: str, settings: PlatformSettings
) -> None:
    earlier = _train(api, BEST)["model_version"]
    latest = _train(api, ALSO_BEST)["model_version"]

    def answering() -> str | None:
        # The first request may wake auto-serve and wait for it (up to its SLA).
        row = {"input_data": [6.7, 3.0, 5.2, 2.3], "sla_seconds": 20}
        reply = httpx.post(f"{api_url}/inference", json=row, timeout=30)
        return reply.json().get("model_version") if reply.status_code == 200 else None

    wait_for(lambda: answering() == latest, timeout=90, what="the latest champion to serve")
    with PredictionLoad(api_url, retries=0) as load:
        moved = api.post("/models/iris/rollback", json={"reason": "test: roll back under load"})
        wait_for(
            lambda: load.answers and load.answers[-1][0] == earlier,
            timeout=30,
            what="serving to follow the rollback",
        )

    assert moved.status_code == 200, moved.text
    assert load.failures == []
    assert load.answers[-1][0] == earlier
    # Give the champion back, as the other tests found it.
    assert (
        api.post(
            f"/models/iris/versions/{latest}/promote", json={"reason": "test done"}
        ).status_code
        == 200
    )


def test_moving_the_champion_needs_the_token(api_url: str) -> None:
    with api_client(api_url, token=None) as anonymous:
        promote = anonymous.post("/models/iris/versions/1/promote", json={"reason": "x"})
        rollback = anonymous.post("/models/iris/rollback", json={"reason": "x"})

    assert promote.status_code == 401 and rollback.status_code == 401


def test_the_cli_lists_models_and_moves_the_champion(own_model, settings: PlatformSettings) -> None:
    api, _ = own_model()
    v1 = _train(api, BEST)["model_version"]
    v2 = _train(api, ALSO_BEST)["model_version"]
    url = str(api.base_url)

    listed = run_cli(url, "models")
    rolled = run_cli(url, "rollback", "--reason", "from the terminal")
    history = run_cli(url, "history")

    assert listed.returncode == 0 and f"v{v2}" in listed.stdout and "champion" in listed.stdout
    assert rolled.returncode == 0, rolled.stderr
    assert f"rollback  {v2} → {v1}" in rolled.stdout
    assert history.stdout.splitlines()[0].endswith("by api: from the terminal")
