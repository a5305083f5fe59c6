"""Bring your own dataset: CSV or Parquet, from a local path or the S3 server, checked
before submission (where it may come from) and by the job (what it holds). Each dataset
is a model of its own (POST /models), beside the session's iris.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest
from helpers import S3_BUCKET, s3_client, wait_for, wait_for_job
from mlflow import MlflowClient
from sklearn.datasets import load_breast_cancer, load_wine

from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

STUMP = {"n_estimators": 1, "max_depth": 1, "random_state": 0}


def _frame(loader) -> pd.DataFrame:
    bunch = loader(as_frame=True)
    frame = bunch.data.copy()
    frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
    return frame


def _train(api: httpx.Client, *, dataset_uri: str, target_column: str) -> dict:
    """A new model of that dataset, and its first training (a stump, so it is quick)."""
    name = f"dataset-{uuid.uuid4().hex[:8]}"
    definition = {"name": name, "dataset_uri": dataset_uri, "target_column": target_column}
    created = api.post("/models", json=definition)
    assert created.status_code == 201, created.text
    accepted = api.post("/trigger_training", json={"model": name, "hyperparameters": STUMP})
    assert accepted.status_code == 202, accepted.text
    return wait_for_job(api, accepted.json()["job_id"])


def _tags(settings: PlatformSettings, job: dict) -> dict[str, str]:
    registry = MlflowClient(settings.mlflow_tracking_uri)
    return registry.get_model_version(job["model"], job["model_version"]).tags


def test_wine_from_s3_trains_and_inference_takes_its_13_features(
    api: httpx.Client, settings: PlatformSettings, s3_url: str, champion_served: None
) -> None:
    body = io.BytesIO()
    _frame(load_wine).to_parquet(body)
    s3_client(s3_url).put_object(
        Bucket=S3_BUCKET, Key="datasets/wine.parquet", Body=body.getvalue()
    )
    uri = f"s3://{S3_BUCKET}/datasets/wine.parquet"

    job = _train(api, dataset_uri=uri, target_column="target")

    assert job["status"] == "succeeded", job
    assert job["dataset_uri"] == uri and job["target_column"] == "target"
    assert job["model"] != "iris" and job["gate_metric"] == "accuracy"
    tags = _tags(settings, job)
    assert tags["mlops.feature_count"] == "13"
    assert len(json.loads(tags["mlops.features"])) == 13
    assert sorted(json.loads(tags["mlops.classes"])) == ["class_0", "class_1", "class_2"]
    assert json.loads(tags["mlops.dataset"]) == {"uri": uri, "target": "target"}
    version = job["model_version"]
    answered = wait_for(
        lambda: (
            reply
            if (
                reply := api.post(
                    "/inference",
                    json={
                        "input_data": [1.0] * 13,
                        "model": job["model"],
                        "model_version": version,
                    },
                    timeout=40,
                )
            ).status_code
            == 200
            else None
        ),
        timeout=120,
        what=f"version {version} to answer",
    )
    assert answered.json()["label"] in {"class_0", "class_1", "class_2"}
    four = api.post(
        "/inference",
        json={"input_data": [1.0] * 4, "model": job["model"], "model_version": version},
    )
    iris = api.post("/inference", json={"input_data": [0.1, 1.2, 2.3, 2.2]})  # the default
    assert four.status_code == 422
    assert "13" in four.text
    assert iris.status_code == 200 and iris.json()["model"] == "iris"


def test_breast_cancer_from_a_local_csv_records_30_features_and_2_classes(
    api: httpx.Client, settings: PlatformSettings
) -> None:
    path = settings.data_dir / "breast_cancer.csv"
    _frame(load_breast_cancer).to_csv(path, index=False)

    job = _train(api, dataset_uri=str(path), target_column="target")

    assert job["status"] == "succeeded", job
    tags = _tags(settings, job)
    assert tags["mlops.feature_count"] == "30"
    assert sorted(json.loads(tags["mlops.classes"])) == ["benign", "malignant"]


def test_missing_feature_values_are_filled_and_unlabelled_rows_dropped(
    api: httpx.Client, settings: PlatformSettings
) -> None:
    frame = _frame(load_wine)
    frame.iloc[::7, 0] = None  # a missing value in every seventh row's first feature
    frame.iloc[::11, -1] = None  # and some rows without a label
    path = settings.data_dir / "wine_gaps.csv"
    frame.to_csv(path, index=False)

    job = _train(api, dataset_uri=str(path), target_column="target")

    assert job["status"] == "succeeded", job
    assert job["accuracy"] is not None


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (
            pd.DataFrame({"a": ["x", "y"] * 10, "b": range(20), "target": ["p", "q"] * 10}),
            "not numeric: a",
        ),
        (pd.DataFrame({"a": range(20), "target": ["p"] * 20}), "at least two classes"),
        (pd.DataFrame({"a": range(6), "target": ["p", "q"] * 3}), "too few rows"),
        (
            pd.DataFrame({"a": range(20), "b": [None] * 20, "target": ["p", "q"] * 10}),
            "no value at all: b",
        ),
    ],
)
def test_a_dataset_that_cannot_be_trained_on_fails_naming_the_problem(
    api: httpx.Client, settings: PlatformSettings, frame: pd.DataFrame, problem: str, tmp_path: Path
) -> None:
    path = settings.data_dir / f"bad_{abs(hash(problem))}.csv"
    frame.to_csv(path, index=False)

    job = _train(api, dataset_uri=str(path), target_column="target")

    assert job["status"] == "failed"
    assert problem in job["error"], job["error"]
    alerts = api.get("/alerts").json()["alerts"]
    alert = next(a for a in alerts if (a["data"] or {}).get("job_id") == job["job_id"])
    assert alert["level"] == "error" and problem in alert["text"]


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("/etc/passwd.csv", "outside the allowed dataset locations"),
        ("s3://another-bucket/data.csv", "outside the allowed dataset locations"),
        (f"s3://{S3_BUCKET}/mlflow/1/model.csv", "outside the allowed dataset locations"),
        ("relative/iris.csv", "must be absolute"),
        ("https://example.com/iris.csv", "only local paths and s3://"),
        ("{data}/../escape.csv", "outside the allowed dataset locations"),
        ("{data}/iris.json", "unsupported dataset format '.json'"),
    ],
)
def test_a_dataset_outside_the_allowed_locations_is_422_and_submits_nothing(
    api: httpx.Client, settings: PlatformSettings, uri: str, words: str
) -> None:
    uri = uri.format(data=settings.data_dir)
    jobs_before = api.get("/jobs").json()["jobs"]

    responses = [
        api.post("/trigger_training", json={"dataset_uri": uri}),
        api.post(
            "/tune",
            json={"search_space": {"max_depth": {"randint": [2, 4]}}, "dataset_uri": uri},
        ),
        api.post("/schedule_training", json={"minutes": 5, "dataset_uri": uri}),
        api.post("/models", json={"name": "outside", "dataset_uri": uri, "target_column": "t"}),
    ]

    for response in responses:
        assert response.status_code == 422, response.text
        error = response.json()["detail"][0]
        assert error["loc"] == ["body", "dataset_uri"]
        assert words in error["msg"]
    assert api.get("/jobs").json()["jobs"] == jobs_before
    assert api.get("/models/outside").status_code == 404
