"""POST /inference through real Ray Serve and the real MLflow registry."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from helpers import PredictionLoad, api_client, ray_headers, wait_for, wait_for_job

from mlops.contracts.model_definition import Task
from mlops.contracts.serve import MULTIPLEX_HEADER
from mlops.ml import data, model
from mlops.services.serve_deployment import APP_NAME, endpoint
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

SERVE_PY = Path(__file__).resolve().parents[2] / "fastapi" / "serve.py"


def _serve_py(settings: PlatformSettings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.as_env(include_secrets=True)}
    return subprocess.run(
        [sys.executable, str(SERVE_PY)], env=env, capture_output=True, text=True, timeout=240
    )


def _train(api: httpx.Client, hyperparameters: dict) -> dict:
    job_id = api.post("/trigger_training", json={"hyperparameters": hyperparameters}).json()[
        "job_id"
    ]
    job = wait_for_job(api, job_id)
    assert job["status"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def served(platform, api_url: str, settings: PlatformSettings) -> dict:
    """A champion trained through the API, deployed with serve.py."""
    with api_client(api_url) as api:
        # 0.967 on iris's test rows, the best any forest scores there: it clears the
        # promotion gate whatever the champion before it.
        job = _train(api, {"random_state": 1})
    assert job["promoted"], job["promotion_reason"]
    deployed = _serve_py(settings)
    assert deployed.returncode == 0, deployed.stderr
    # Replicas already running switch to a new champion within serve_reload_seconds.
    wait_for(
        lambda: (
            httpx.post(
                f"{api_url}/inference", json={"input_data": [5.1, 3.5, 1.4, 0.2]}, timeout=30
            )
            .json()
            .get("model_version")
            == job["model_version"]
        ),
        timeout=30,
        what="the new champion to answer",
    )
    return job


def _test_rows() -> tuple[list[list[float]], list[str]]:
    features, labels = data.split_features(data.iris_frame(), data.IRIS_TARGET)
    parts = model.split(features, labels, task=Task.CLASSIFICATION, test_size=0.2, seed=42)
    return parts.x_test.to_numpy().tolist(), list(parts.y_test)


def _sklearn_predictions(
    settings: PlatformSettings, version: str, rows: list[list[float]], folder: Path
) -> list[str]:
    """The version's scikit-learn pipeline's labels, downloaded into `folder` (MLflow
    would leave its own download folder in /tmp)."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    pipeline = mlflow.sklearn.load_model(
        f"models:/{settings.model_name}/{version}", dst_path=str(folder)
    )
    return list(pipeline.predict(pd.DataFrame(rows, columns=data.IRIS_FEATURES)))


def _predict(api: httpx.Client, row: list[float], **extra) -> httpx.Response:
    return api.post("/inference", json={"input_data": row, **extra})


def test_champion_predicts_like_the_sklearn_pipeline_on_iris_test_rows(
    api: httpx.Client, settings: PlatformSettings, served: dict, tmp_path: Path
) -> None:
    rows, _ = _test_rows()
    expected = _sklearn_predictions(settings, served["model_version"], rows, tmp_path)

    replies = [_predict(api, row).json() for row in rows]

    assert [r["label"] for r in replies] == expected
    assert {r["model_version"] for r in replies} == {served["model_version"]}
    assert all(r["predictor"] == "onnx" for r in replies)
    classes = sorted(replies[0]["probabilities"])
    assert all(r["label"] == classes[r["prediction"]] for r in replies)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in replies)


def test_a_pinned_older_version_answers_with_its_own_model(
    api: httpx.Client, settings: PlatformSettings, served: dict, tmp_path: Path
) -> None:
    newer = _train(api, {"n_estimators": 3, "max_depth": 1, "random_state": 0})
    rows, _ = _test_rows()
    expected = _sklearn_predictions(settings, served["model_version"], rows, tmp_path)

    replies = [_predict(api, row, model_version=served["model_version"]).json() for row in rows]

    assert newer["model_version"] != served["model_version"]
    assert {r["model_version"] for r in replies} == {served["model_version"]}
    assert [r["label"] for r in replies] == expected


def test_unknown_version_is_404_naming_it(api: httpx.Client, served: dict) -> None:
    response = _predict(api, [5.1, 3.5, 1.4, 0.2], model_version="9999")

    assert response.status_code == 404
    assert response.json()["detail"] == "iris has no version '9999'"  # the model's own name


def test_a_replica_answers_each_group_of_a_call_on_its_own(
    settings: PlatformSettings, served: dict
) -> None:
    # The API sends rows of several models in one call (contracts.serve): a group that
    # cannot be answered never fails the others.
    name, version = settings.model_name, served["model_version"]
    groups = [
        {"model": name, "rows": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
        {"model": f"{name}/{version}", "rows": [[5.1, 3.5, 1.4]]},
        {"model": f"{name}/9999", "rows": [[5.1, 3.5, 1.4, 0.2]]},
        {"model": "", "rows": [[5.1, 3.5, 1.4, 0.2]]},
        {"model": f"{name}/{version}", "rows": [[6.7, 3.0, 5.2, 2.3]]},
    ]

    reply = httpx.post(
        endpoint(settings), json={"groups": groups}, headers={MULTIPLEX_HEADER: name}, timeout=60
    )

    assert reply.status_code == 200, reply.text
    good, short, unknown, unnamed, pinned = reply.json()["groups"]
    assert good["version"] == version and len(good["outputs"]) == 2
    assert good["classes"][max(range(3), key=good["outputs"][1].__getitem__)] == "Virginica"
    assert (short["error"], unknown["error"], unnamed["error"]) == (
        "bad_input", "unknown_version", "bad_input"
    )  # fmt: skip
    assert "expects 4 features" in short["detail"] and "9999" in unknown["detail"]
    assert pinned["outputs"] == good["outputs"][1:]


def test_a_call_that_is_not_of_the_contract_is_422(
    settings: PlatformSettings, served: dict
) -> None:
    reply = httpx.post(endpoint(settings), json={"rows": [[5.1, 3.5, 1.4, 0.2]]}, timeout=60)

    assert reply.status_code == 422
    assert reply.json()["error"] == "bad_input" and "groups" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"input_data": [5.1, 3.5, 1.4]}', "expects 4 features"),
        ('{"input_data": [5.1, 3.5, 1.4, 0.2, 9.9]}', "expects 4 features"),
        ('{"input_data": []}', "at least 1"),
        ('{"input_data": [5.1, 3.5, NaN, 0.2]}', "finite"),
        ('{"input_data": [5.1, 3.5, Infinity, 0.2]}', "finite"),
        # Beyond float32, which the model computes in (found by the fuzzer).
        ('{"input_data": [5.1, 3.5, -1.8e142, 0.2]}', "greater than or equal to -3402823466"),
        ('{"input_data": [5.1, 3.5, 1.4, 0.2], "retries": 11}', "less than or equal to 10"),
        ('{"input_data": [5.1, 3.5, 1.4, 0.2], "sla_seconds": 0}', "greater than or equal to 1"),
    ],
)
def test_bad_input_is_422_with_a_clear_message(
    api: httpx.Client, served: dict, body: str, needle: str
) -> None:
    response = api.post("/inference", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert needle in str(response.json()["detail"])


def test_serving_down_is_503_saying_what_to_do(start_api) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # closed again before the request: nothing listens
    api, _ = start_api(serve_url=f"http://127.0.0.1:{dead}")

    response = _predict(api, [5.1, 3.5, 1.4, 0.2], retries=1, sla_seconds=5)

    assert response.status_code == 503
    assert "serve.py" in response.json()["detail"]
    assert "Retry-After" not in response.headers  # a person must start it


def test_serving_down_with_auto_serve_says_it_is_being_started(start_api, served: dict) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    # iris has a champion, so this API deploys serving: Serve finds the session's
    # application running as configured and leaves it alone.
    api, _ = start_api(serve_url=f"http://127.0.0.1:{dead}", auto_serve=True)

    response = _predict(api, [5.1, 3.5, 1.4, 0.2], retries=0, sla_seconds=5)

    assert response.status_code == 503
    assert "being started" in response.json()["detail"]
    assert response.headers["Retry-After"] == "2"


def test_serving_down_and_no_champion_says_to_train_not_to_wait(start_api) -> None:
    """Auto-serve deploys serving for champions: a model with none has nothing to wait
    for, and a client that honours Retry-After must not wait in vain."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    # A database of its own: the default model is defined from this API's settings.
    never_trained = f"never_trained_{uuid.uuid4().hex[:8]}"
    api, _ = start_api(
        redis_db=9, serve_url=f"http://127.0.0.1:{dead}", auto_serve=True, model_name=never_trained
    )

    response = _predict(api, [5.1, 3.5, 1.4, 0.2], retries=0, sla_seconds=5)

    assert response.status_code == 503
    assert response.json()["detail"].startswith("iris has no champion yet: train it")
    assert "Retry-After" not in response.headers


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: a hung serving layer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_exceeding_the_sla_is_504_saying_so(start_api, silent_server: int) -> None:
    api, _ = start_api(serve_url=f"http://127.0.0.1:{silent_server}")

    started = time.monotonic()
    response = _predict(api, [5.1, 3.5, 1.4, 0.2], sla_seconds=1)
    elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert "sla_seconds=1" in response.json()["detail"]
    assert elapsed < 10  # the SLA cut the wait short: the silent server never answers


def _replicas(application: dict) -> list[dict]:
    return application["deployments"]["ModelServer"]["replicas"]


def test_serve_py_twice_changes_nothing(settings: PlatformSettings, served: dict) -> None:
    applications = f"{settings.ray_address}/api/serve/applications/"
    before = httpx.get(applications, headers=ray_headers()).json()["applications"][APP_NAME]

    again = _serve_py(settings)

    after = httpx.get(applications, headers=ray_headers()).json()["applications"][APP_NAME]
    assert again.returncode == 0, again.stderr
    assert "serving every model at POST" in again.stderr and "/models" in again.stderr
    assert after["last_deployed_time_s"] == before["last_deployed_time_s"]
    assert after["status"] == "RUNNING"
    replicas = [(r["replica_id"], r["start_time_s"]) for r in _replicas(after)]
    assert replicas == [(r["replica_id"], r["start_time_s"]) for r in _replicas(before)]


def test_promotion_hot_reloads_with_zero_failed_requests(
    api_url: str, api: httpx.Client, served: dict
) -> None:
    with PredictionLoad(api_url, retries=0) as load:
        promoted = _train(api, {"n_estimators": 5, "random_state": 0})  # 0.967 too
        wait_for(
            lambda: load.answers and load.answers[-1][0] == promoted["model_version"],
            timeout=30,
            what="the new champion to answer",
        )

    assert promoted["promoted"] is True
    assert load.failures == []
    assert len(load.answers) > 20
    assert load.answers[-1][0] == promoted["model_version"]


def _replica_pids(settings: PlatformSettings) -> list[int]:
    """Process ids of the live Serve replicas, from Ray's state API."""
    reply = httpx.get(
        f"{settings.ray_address}/api/v0/actors",
        params={"detail": "true", "limit": "1000"},
        headers=ray_headers(),
    ).json()
    actors = reply["data"]["result"]["result"]
    return [
        actor["pid"]
        for actor in actors
        if actor["state"] == "ALIVE" and actor["class_name"].startswith("ServeReplica:")
    ]


def test_a_replica_killed_under_load_costs_no_request(
    api_url: str, settings: PlatformSettings, served: dict
) -> None:
    two = settings.model_copy(update={"serve_replicas": 2})
    assert _serve_py(two).returncode == 0
    wait_for(lambda: len(_replica_pids(settings)) == 2, timeout=120, what="two replicas")
    pids = _replica_pids(settings)
    try:
        with PredictionLoad(api_url, clients=4) as load:  # default retries and SLA
            wait_for(lambda: len(load.answers) > 50, timeout=30, what="load to build up")
            os.kill(pids[0], signal.SIGKILL)
            killed_at = len(load.answers)
            wait_for(
                lambda: pids[0] not in (now := _replica_pids(settings)) and len(now) == 2,
                timeout=120,
                what="Serve to replace the killed replica",
            )
            wait_for(lambda: len(load.answers) > killed_at + 100, timeout=60, what="load to go on")
    finally:
        restored = _serve_py(settings)  # back to one replica for the other tests

    assert load.failures == []
    assert max(seconds for _, seconds in load.answers) < 60  # within the default SLA
    assert restored.returncode == 0, restored.stderr
