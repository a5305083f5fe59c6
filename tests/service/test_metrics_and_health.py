"""/get_metrics against the real MLflow server, and the health endpoints."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from helpers import run_async, wait_for_job
from mlflow import MlflowClient

from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.schemas import MetricsResponse
from mlops.services.model_catalog import default_definition
from mlops.services.model_report import ModelReport
from mlops.settings.platform import PlatformSettings


def _metrics_for(settings: PlatformSettings) -> MetricsResponse:
    """The metrics service against the real MLflow server, for these settings' names."""

    async def fetch() -> MetricsResponse:
        async with httpx.AsyncClient() as http:
            registry = MlflowRegistry(http, settings.mlflow_tracking_uri)
            report = ModelReport(settings=settings, registry=registry)
            now = datetime.now(UTC)
            return await report.report(default_definition(settings, now), now)

    return run_async(fetch())


def test_metrics_of_an_empty_registry_are_nulls_and_an_empty_map(
    platform, settings: PlatformSettings
) -> None:
    fresh = settings.model_copy(
        update={"model_name": f"empty_{uuid.uuid4().hex[:8]}", "experiment_name": "no_runs_yet"}
    )

    metrics = _metrics_for(fresh)

    assert metrics.latest_model is None
    assert metrics.champion_version is None
    assert metrics.weekly_average is None
    assert metrics.avg_accuracy_last_7_days == {}
    assert metrics.runs == []


def test_metrics_of_a_registered_model_without_a_champion_are_nulls(
    platform, settings: PlatformSettings
) -> None:
    fresh = settings.model_copy(update={"model_name": f"unpromoted_{uuid.uuid4().hex[:8]}"})
    MlflowClient(settings.mlflow_tracking_uri).create_registered_model(fresh.model_name)

    metrics = _metrics_for(fresh)

    assert metrics.latest_model is None
    assert metrics.champion_version is None


@pytest.mark.slow
def test_metrics_report_the_latest_version_and_todays_average(api: httpx.Client) -> None:
    # A seed that scores 0.967 on iris's test rows: promoted whatever the champion.
    hyperparameters = {"random_state": 1}
    job = wait_for_job(
        api,
        api.post("/trigger_training", json={"hyperparameters": hyperparameters}).json()["job_id"],
    )

    metrics = api.get("/get_metrics")

    assert metrics.status_code == 200
    body = metrics.json()
    assert body["latest_model"]["version"] == job["model_version"]
    assert body["latest_model"]["accuracy"] == pytest.approx(job["accuracy"])
    assert body["latest_model"]["is_champion"] is True
    assert body["champion_version"] == job["model_version"]
    accuracies = [run["accuracy"] for run in body["runs"]]
    assert job["run_id"] in {run["run_id"] for run in body["runs"]}
    assert body["weekly_average"] == pytest.approx(sum(accuracies) / len(accuracies))
    # Each day's average is of that day's runs (UTC): the session's runs may straddle
    # midnight.
    by_day: dict[str, list[float]] = {}
    for run in body["runs"]:
        day = datetime.fromisoformat(run["started_at"]).astimezone(UTC).date().isoformat()
        by_day.setdefault(day, []).append(run["accuracy"])
    expected = {day: pytest.approx(sum(found) / len(found)) for day, found in by_day.items()}
    assert body["avg_accuracy_last_7_days"] == expected


def test_health_answers_without_dependencies(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"status": "ok"}


def test_ready_reports_each_dependency(api: httpx.Client) -> None:
    response = api.get("/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert set(body["dependencies"]) == {"ray", "mlflow", "redis"}
    assert body["dependencies"]["ray"]["detail"] == "2.60.0"
