"""Rollouts on the real platform: a challenger in canary or shadow beside the champion,
decided by the sequential test on labels sent back, with no failed request."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from helpers import api_client, wait_for, wait_for_job

from mlops.ml import data
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def iris_model(platform, api_url: str, settings: PlatformSettings) -> dict:
    """A model of iris with a good version and one trained on shuffled labels."""
    frame = data.iris_frame()
    name = f"rollout-{uuid.uuid4().hex[:6]}"
    good = settings.data_dir / f"{name}.csv"
    frame.to_csv(good, index=False)
    shuffled = frame.assign(
        **{data.IRIS_TARGET: frame[data.IRIS_TARGET].sample(frac=1, random_state=3).to_numpy()}
    )
    bad = settings.data_dir / f"{name}-shuffled.csv"
    shuffled.to_csv(bad, index=False)
    with api_client(api_url) as api:
        body = {"name": name, "dataset_uri": str(good), "target_column": data.IRIS_TARGET}
        assert api.post("/models", json=body).status_code == 201
        versions = {}
        for kind, uri in (("good", good), ("bad", bad)):
            job = {"model": name, "dataset_uri": str(uri), "hyperparameters": {"random_state": 1}}
            accepted = api.post("/trigger_training", json=job)
            assert accepted.status_code == 202, accepted.text
            finished = wait_for_job(api, accepted.json()["job_id"])
            assert finished["status"] == "succeeded", finished
            versions[kind] = finished["model_version"]
        champion = api.get(f"/models/{name}").json()["champion"]["version"]
        assert champion == versions["good"]
        # The API deploys serving once a champion exists: the model answers, then.
        row = {"model": name, "input_data": [5.1, 3.5, 1.4, 0.2]}
        wait_for(
            lambda: (
                (r := api.post("/inference", json=row)).is_success
                and r.json()["model_version"] == champion
            ),
            timeout=120,
            what=f"{name} to be served",
        )
    return {"name": name, **versions}


class LabelledTraffic:
    """Clients predicting iris rows and sending each true label back, until the block
    ends: the version of every answer, and every failed request."""

    def __init__(self, api_url: str, model: str, clients: int = 4) -> None:
        frame = data.iris_frame()
        self._rows = list(
            zip(
                frame[data.IRIS_FEATURES].to_numpy().tolist(),
                frame[data.IRIS_TARGET],
                strict=True,
            )
        )
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._model = model
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(api_url, seed)) for seed in range(clients)
        ]

    def _run(self, api_url: str, seed: int) -> None:
        rng = random.Random(seed)
        with api_client(api_url) as client:
            while not self._stop.is_set():
                row, label = rng.choice(self._rows)
                answer = client.post("/inference", json={"model": self._model, "input_data": row})
                if answer.status_code != 200:
                    self.failures.append(f"inference {answer.status_code} {answer.text}")
                    continue
                self.versions.append(answer.json()["model_version"])
                sent = {"prediction_id": answer.json()["prediction_id"], "label": label}
                labelled = client.post("/feedback", json=sent)
                if labelled.status_code != 200:
                    self.failures.append(f"feedback {labelled.status_code} {labelled.text}")

    @contextmanager
    def running(self) -> Iterator[LabelledTraffic]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join()


def _ended(api: httpx.Client, model: str) -> dict | None:
    report = api.get(f"/models/{model}/rollouts").json()
    return report if not report["active"] else None


def test_a_worse_canary_is_aborted_and_a_better_one_promoted_with_no_failed_request(
    api: httpx.Client, api_url: str, iris_model: dict
) -> None:
    name, good, bad = iris_model["name"], iris_model["good"], iris_model["bad"]
    canary = {"mode": "canary", "percent": 50, "auto": True, "min_labels": 30}
    traffic = LabelledTraffic(api_url, name)
    with traffic.running():
        started = api.post(f"/models/{name}/rollouts", json={"version": bad, **canary})
        assert started.status_code == 201, started.text
        aborted = wait_for(lambda: _ended(api, name), timeout=180, what="the worse canary's end")
        answered_during = len(traffic.versions)
        # Every process routes by what it read within MLOPS_ROLLOUT_REFRESH_SECONDS.
        wait_for(lambda: len(traffic.versions) > answered_during + 200, timeout=60, what="load")
        after_abort = traffic.versions[answered_during + 100 :]

        # The shuffled version made champion by hand; the good one rolled out against it.
        promoted = api.post(
            f"/models/{name}/versions/{bad}/promote", json={"reason": "test: a poor champion"}
        )
        assert promoted.status_code == 200, promoted.text
        started = api.post(f"/models/{name}/rollouts", json={"version": good, **canary})
        assert started.status_code == 201, started.text
        won = wait_for(lambda: _ended(api, name), timeout=180, what="the better canary's end")

    assert aborted["ended"]["outcome"] == "aborted", aborted
    assert aborted["decision"] == "abort"
    assert aborted["difference"]["high"] < 0
    assert bad in traffic.versions  # the canary did answer
    assert set(after_abort) == {good}
    assert won["ended"]["outcome"] == "promoted", won
    assert api.get(f"/models/{name}").json()["champion"]["version"] == good
    history = api.get(f"/models/{name}/history").json()["moves"]
    assert history[0]["by"] == "rollout" and history[0]["to_version"] == good
    assert traffic.failures == []


def test_a_shadow_is_unseen_by_callers_and_scored_on_the_same_labels(
    api: httpx.Client, api_url: str, iris_model: dict
) -> None:
    name = iris_model["name"]
    champion = api.get(f"/models/{name}").json()["champion"]["version"]
    challenger = iris_model["bad"] if champion == iris_model["good"] else iris_model["good"]
    shadow = {"version": challenger, "mode": "shadow", "percent": 100}
    # Replicas follow a champion moved by the last test within their reload period.
    wait_for(
        lambda: (
            api.post("/inference", json={"model": name, "input_data": [5.1, 3.5, 1.4, 0.2]}).json()[
                "model_version"
            ]
            == champion
        ),
        timeout=30,
        what=f"version {champion} to answer",
    )
    traffic = LabelledTraffic(api_url, name, clients=2)
    with traffic.running():
        assert api.post(f"/models/{name}/rollouts", json=shadow).status_code == 201
        report = wait_for(
            lambda: (
                (r := api.get(f"/models/{name}/rollouts").json())["challenger"]["labels"] >= 50
                and r
            ),
            timeout=120,
            what="labelled shadow answers",
        )
        ended = api.delete(f"/models/{name}/rollouts", params={"reason": "seen enough"})

    assert set(traffic.versions) == {champion}  # callers never see the shadow
    assert report["champion"]["labels"] >= report["challenger"]["labels"]
    assert report["agreement"] is not None and 0 <= report["agreement"] <= 1
    assert report["difference"] is not None
    assert ended.status_code == 200 and ended.json()["outcome"] == "aborted"
    assert traffic.failures == []


def test_rollouts_that_cannot_be_are_refused_saying_why(
    api: httpx.Client, iris_model: dict
) -> None:
    name = iris_model["name"]
    champion = api.get(f"/models/{name}").json()["champion"]["version"]
    other = iris_model["bad"] if champion == iris_model["good"] else iris_model["good"]

    of_champion = api.post(f"/models/{name}/rollouts", json={"version": champion, "mode": "canary"})
    unknown = api.post(f"/models/{name}/rollouts", json={"version": "999", "mode": "canary"})
    percent = api.post(
        f"/models/{name}/rollouts", json={"version": other, "mode": "canary", "percent": 0}
    )
    first = api.post(f"/models/{name}/rollouts", json={"version": other, "mode": "canary"})
    second = api.post(f"/models/{name}/rollouts", json={"version": other, "mode": "shadow"})
    aborted = api.delete(f"/models/{name}/rollouts")
    none_left = api.delete(f"/models/{name}/rollouts")

    assert of_champion.status_code == 409 and "champion already" in of_champion.json()["detail"]
    assert unknown.status_code == 404
    assert percent.status_code == 422
    assert first.status_code == 201
    assert second.status_code == 409 and "in progress" in second.json()["detail"]
    assert f"(mlops rollout abort -m {name}, or DELETE" in second.json()["detail"]
    assert aborted.status_code == 200
    assert none_left.status_code == 404
    assert api.get("/models/nosuch/rollouts").status_code == 404
    assert api.get(f"/models/{name}/rollouts").json()["ended"]["outcome"] == "aborted"
