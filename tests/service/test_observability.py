"""What operators scrape and grep: /metrics, request ids and JSON logs."""

from __future__ import annotations

import json

import httpx
import pytest
from helpers import API_TOKEN, ray_headers, run_async, wait_for, wait_for_job
from prometheus_client.parser import text_string_to_metric_families

from mlops.settings.platform import PlatformSettings
from mlops.telemetry import Instruments, RequestTelemetry

pytestmark = pytest.mark.slow


def _samples(api: httpx.Client) -> dict[tuple[str, frozenset], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_a_training_run_and_an_inference(api: httpx.Client) -> None:
    before = _samples(api)

    job = wait_for_job(
        api, api.post("/trigger_training", json={"hyperparameters": {}}).json()["job_id"]
    )

    def served() -> dict | None:
        response = api.post("/inference", json={"input_data": [5.1, 3.5, 1.4, 0.2]})
        return response.json() if response.status_code == 200 else None

    answer = wait_for(served, timeout=90, what="an inference")
    after = _samples(api)

    version = answer["model_version"]
    assert job["status"] == "succeeded"
    jobs = "mlops_training_jobs_total"
    assert _value(after, jobs, status="succeeded") == _value(before, jobs, status="succeeded") + 1
    runs = "mlops_training_job_duration_seconds_count"
    assert _value(after, runs, status="succeeded") == _value(before, runs, status="succeeded") + 1
    assert _value(after, "mlops_training_job_duration_seconds_sum", status="succeeded") > 0
    inferences = "mlops_inference_requests_total"
    answered_by = {"model": "iris", "model_version": version}
    assert _value(after, inferences, **answered_by, status="200") >= 1
    assert _value(after, "mlops_inference_duration_seconds_count", **answered_by) >= 1
    requests = "mlops_http_requests_total"
    trigger = {"route": "/trigger_training", "method": "POST", "status": "202"}
    assert _value(after, requests, **trigger) == _value(before, requests, **trigger) + 1
    assert _value(after, "mlops_alerts_total", level="success") >= 1 or _value(
        after, "mlops_alerts_total", level="warning"
    )
    assert ("mlops_sse_clients", frozenset()) in after


def test_routes_are_labelled_by_template_not_by_raw_path(api: httpx.Client) -> None:
    api.get("/jobs/train-aaaaaaaaaaaa")
    api.get("/no/such/path")

    samples = _samples(api)

    routes = {dict(labels).get("route") for name, labels in samples if "http_requests" in name}
    assert "/jobs/{job_id}" in routes and "unmatched" in routes
    assert not [r for r in routes if r and "train-aaaa" in r]


def test_every_answer_carries_a_request_id_and_keeps_the_callers(api: httpx.Client) -> None:
    mine = api.get("/health", headers={"X-Request-ID": "deploy-check-42"})
    fresh = api.get("/health")
    too_long = api.get("/health", headers={"X-Request-ID": "x" * 65})
    odd = api.get("/health", headers={"X-Request-ID": "two words"})

    assert mine.headers["x-request-id"] == "deploy-check-42"
    assert len(fresh.headers["x-request-id"]) == 32
    assert len(too_long.headers["x-request-id"]) == 32
    assert odd.headers["x-request-id"] != "two words"


def test_the_api_logs_one_json_line_per_request_without_secrets(
    api: httpx.Client, settings: PlatformSettings
) -> None:
    response = api.post(
        "/watch_model", json={"minutes": 90}, headers={"X-Request-ID": "trace-me-7"}
    )
    api.delete(f"/kill_scheduled_job/{response.json()['schedule_id']}")
    log = settings.data_dir / "logs" / "api.log"

    lines = wait_for(
        lambda: [ln for ln in log.read_text().splitlines() if "trace-me-7" in ln],
        timeout=10,
        what="the request's log lines",
    )

    records = [json.loads(line) for line in lines]
    requests = [r for r in records if r["logger"] == "mlops.request"]
    assert len(requests) == 1
    assert requests[0]["route"] == "/watch_model" and requests[0]["status"] == 201
    assert all(r["request_id"] == "trace-me-7" for r in records)
    assert API_TOKEN not in log.read_text()


def test_a_training_job_logs_json_with_its_job_id(
    api: httpx.Client, settings: PlatformSettings
) -> None:
    job_id = api.post("/trigger_training", json={"hyperparameters": {}}).json()["job_id"]
    wait_for_job(api, job_id)
    # The record ends as the work does; Ray's job ends once its entrypoint has printed
    # the work's log lines (it attaches to the work a second or so after it began).
    ray_job = f"{settings.ray_address}/api/jobs/{job_id}"
    wait_for(
        lambda: httpx.get(ray_job, headers=ray_headers()).json()["status"] == "SUCCEEDED",
        timeout=60,
        what="the Ray job's end",
    )

    logs = httpx.get(
        f"{settings.ray_address}/api/jobs/{job_id}/logs", headers=ray_headers()
    ).json()["logs"]

    ours = [json.loads(ln) for ln in logs.splitlines() if ln.startswith('{"time"')]
    assert ours, logs[-2000:]
    assert all(record["job_id"] == job_id for record in ours)
    assert any("accuracy" in record["message"] for record in ours)


def test_an_unhandled_error_is_counted_and_logged_as_a_500() -> None:
    instruments = Instruments()

    async def broken(scope, receive, send) -> None:
        raise RuntimeError("a bug")

    app = RequestTelemetry(broken, instruments=instruments)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/anything")

    run_async(call())

    labels = {"route": "unmatched", "method": "GET", "status": "500"}
    assert instruments.registry.get_sample_value("mlops_http_requests_total", labels) == 1
