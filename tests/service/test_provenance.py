"""Only versions the platform trained are served, scored or promoted.

A stranger who can reach MLflow registers versions of the platform's model: one whose
artifact is a cloudpickle that runs a command when loaded (it touches a marker file),
one whose skops artifact asks MLflow to trust `builtins.eval`, and one that copies a
sealed version's tags, seal included. The replicas, the API's promotion and the next
training's champion scoring must refuse all three, and the marker must never appear.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
from helpers import wait_for_job
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

ROW = [5.1, 3.5, 1.4, 0.2]
FEATURES = '["sepal_length", "sepal_width", "petal_length", "petal_width"]'


class _RunsCommand:
    """Unpickling this runs `command` (what a hostile artifact does)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@dataclass(frozen=True)
class Strangers:
    marker: Path
    pickled: str  # cloudpickle artifact that touches the marker when loaded
    trusts_eval: str  # skops artifact whose MLmodel trusts builtins.eval
    copied_seal: str  # a version carrying another version's tags, seal included


def _register(client: MlflowClient, model_name: str, log) -> str:
    """Log and register a version as anyone with MLflow access can."""
    with mlflow.start_run():
        info = log()
    version = mlflow.register_model(info.model_uri, model_name).version
    for key, value in {"mlops.features": FEATURES, "mlops.compiled": "none"}.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    return str(version)


def register_strangers(settings: PlatformSettings, model_name: str, tmp_path: Path) -> Strangers:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    marker = tmp_path / f"ran-{uuid.uuid4().hex[:8]}"
    pickled = _register(
        client,
        model_name,
        lambda: mlflow.sklearn.log_model(
            _RunsCommand(f"touch {marker}"),
            name="model",
            serialization_format="cloudpickle",
            pip_requirements=[],  # no requirement inference: it would load the model here
        ),
    )
    evaluates = Pipeline([("eval", FunctionTransformer(eval))])
    trusts_eval = _register(
        client,
        model_name,
        lambda: mlflow.sklearn.log_model(
            evaluates,
            name="model",
            serialization_format="skops",
            skops_trusted_types=["builtins.eval"],
            pip_requirements=[],
        ),
    )
    sealed = _sealed_version(client, model_name)
    copied = _register(
        client,
        model_name,
        lambda: mlflow.sklearn.log_model(
            evaluates, name="model", serialization_format="cloudpickle", pip_requirements=[]
        ),
    )
    for key, value in client.get_model_version(model_name, sealed).tags.items():
        client.set_model_version_tag(model_name, copied, key, value)
    return Strangers(marker, pickled, trusts_eval, copied)


def _sealed_version(client: MlflowClient, model_name: str) -> str:
    found = client.search_model_versions(f"name='{model_name}'")
    return next(str(v.version) for v in found if "mlops.seal" in v.tags)


@pytest.fixture()
def strangers(champion_served, settings: PlatformSettings, tmp_path: Path) -> Iterator[Strangers]:
    """Stranger versions of the session's model, beside a champion the platform trained
    and serves."""
    made = register_strangers(settings, settings.model_name, tmp_path)
    yield made
    assert not made.marker.exists(), "a stranger's artifact ran its command"


def test_models_lists_stranger_versions_as_foreign_and_own_ones_not(
    api: httpx.Client, strangers: Strangers
) -> None:
    listed = {v["version"]: v for v in api.get("/models/iris/versions").json()["versions"]}

    assert "has no seal" in listed[strangers.pickled]["foreign"]
    assert "has no seal" in listed[strangers.trusts_eval]["foreign"]
    assert "does not match its seal" in listed[strangers.copied_seal]["foreign"]
    champion = api.get("/models/iris/versions").json()["champion_version"]
    assert listed[champion]["foreign"] is None


def test_pinned_inference_refuses_stranger_versions_without_loading_them(
    api: httpx.Client, strangers: Strangers
) -> None:
    for version in (strangers.pickled, strangers.trusts_eval, strangers.copied_seal):
        body = {"input_data": ROW, "model_version": version, "sla_seconds": 30}

        answer = api.post("/inference", json=body, timeout=40)

        assert answer.status_code == 409, answer.text
        assert f"version {version}" in answer.json()["detail"]
    assert not strangers.marker.exists()


def test_promotion_refuses_a_stranger_version_and_the_champion_stays(
    api: httpx.Client, strangers: Strangers
) -> None:
    before = api.get("/models/iris/versions").json()["champion_version"]

    refused = api.post(
        f"/models/iris/versions/{strangers.pickled}/promote", json={"reason": "try it"}
    )

    assert refused.status_code == 409, refused.text
    assert "only versions the platform trained can be promoted" in refused.json()["detail"]
    assert api.get("/models/iris/versions").json()["champion_version"] == before


def _trained_beside_strangers(start_api, settings: PlatformSettings, tmp_path: Path):
    """An API of its own model: one version trained (the champion), then strangers'."""
    name = f"sealed_{uuid.uuid4().hex[:8]}"
    api, _ = start_api(model_name=name, experiment_name=name, redis_db=13)
    accepted = api.post("/trigger_training", json={"hyperparameters": {}})
    first = wait_for_job(api, accepted.json()["job_id"])
    return api, name, first, register_strangers(settings, name, tmp_path)


def test_training_fails_closed_when_the_champion_is_a_stranger_version(
    start_api, settings: PlatformSettings, tmp_path: Path
) -> None:
    api, name, first, made = _trained_beside_strangers(start_api, settings, tmp_path)
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_registered_model_alias(name, "champion", made.pickled)  # behind the API's back

    job = api.post("/trigger_training", json={"hyperparameters": {"random_state": 1}})
    second = wait_for_job(api, job.json()["job_id"])

    assert first["promoted"] is True
    assert second["status"] == "succeeded"
    assert second["promoted"] is False
    assert f"champion version {made.pickled} could not be scored" in second["promotion_reason"]
    assert "has no seal" in second["promotion_reason"]
    assert client.get_model_version_by_alias(name, "champion").version == made.pickled
    assert not made.marker.exists()


def test_an_operator_adopts_a_version_from_before_seals_but_never_a_strangers(
    start_api, settings: PlatformSettings, tmp_path: Path
) -> None:
    api, name, first, made = _trained_beside_strangers(start_api, settings, tmp_path)
    own = first["model_version"]
    client = MlflowClient(settings.mlflow_tracking_uri)
    for tag in ("mlops.seal", "mlops.skops_sha256", "mlops.onnx_sha256"):  # as before seals
        client.delete_model_version_tag(name, own, tag)
    env = {
        **os.environ,
        "MLOPS_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLOPS_MODEL_NAME": name,
        "MLOPS_MODEL_SIGNING_KEY": settings.model_signing_key.get_secret_value(),  # type: ignore[union-attr]
    }
    foreign_before = {
        v["version"]: v["foreign"] for v in api.get("/models/iris/versions").json()["versions"]
    }

    adopted = subprocess.run(
        [sys.executable, "-m", "mlops.ml.adopt", own, made.pickled, made.trusts_eval],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert "has no seal" in foreign_before[own]
    assert adopted.returncode == 1, adopted.stderr  # two of the three refused
    assert f"version {own} of {name} checked and sealed" in adopted.stderr
    assert f"version {made.pickled} left foreign: the model has no model.skops" in adopted.stderr
    assert f"version {made.trusts_eval} left foreign" in adopted.stderr
    assert "builtins.eval" in adopted.stderr
    listed = {
        v["version"]: v["foreign"] for v in api.get("/models/iris/versions").json()["versions"]
    }
    assert listed[own] is None
    assert listed[made.pickled] and listed[made.trusts_eval]
    assert not made.marker.exists()
