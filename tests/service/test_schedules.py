"""Schedules and watches against real API processes sharing a real Valkey.

The test platform sets MLOPS_SCHEDULE_MINUTE_SECONDS=1, so a schedule "minute" lasts
one second here; the API contract stays in minutes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from helpers import wait_for

pytestmark = pytest.mark.slow


def _schedule(api: httpx.Client, schedule_id: str) -> dict | None:
    listed = api.get("/scheduled_jobs").raise_for_status().json()["schedules"]
    return next((s for s in listed if s["schedule_id"] == schedule_id), None)


def test_schedule_training_submits_jobs_until_killed(api: httpx.Client) -> None:
    created = api.post(
        "/schedule_training", json={"minutes": 3, "hyperparameters": {"n_estimators": 10}}
    )

    assert created.status_code == 201
    schedule = created.json()
    assert schedule["kind"] == "training"
    assert schedule["next_run_time"] is not None
    schedule_id = schedule["schedule_id"]
    job = wait_for(
        lambda: next(
            (j for j in api.get("/jobs").json()["jobs"] if j["source"] == schedule_id), None
        ),
        timeout=20,
        what="a scheduled training job",
    )
    assert job["hyperparameters"] == {"n_estimators": 10}

    killed = api.delete(f"/kill_scheduled_job/{schedule_id}")

    assert killed.status_code == 200
    assert _schedule(api, schedule_id) is None


@pytest.mark.parametrize("minutes", [0, -1, 10_081, 1.5, "5", None, True])
@pytest.mark.parametrize("endpoint", ["/schedule_training", "/watch_model"])
def test_minutes_outside_one_to_a_week_are_422(api: httpx.Client, endpoint, minutes) -> None:
    response = api.post(endpoint, json={"minutes": minutes, "hyperparameters": {}})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "minutes"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"cron": "0 2 * *"}, "cron", "5 fields"),
        ({"cron": "0 25 * * *"}, "cron", "maximum value (23)"),
        ({"cron": "0 0 30 2 *"}, "cron", "never fires"),
        ({"cron": "0 2 * * *", "timezone": "Europe/Atlantis"}, "timezone", "IANA"),
        ({"cron": "0 2 * * *", "minutes": 5}, "minutes", "exactly one"),
        ({}, "minutes", "exactly one"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/schedule_training", "/watch_model", "/watch_drift"])
def test_a_bad_cron_or_zone_is_422_naming_the_field(
    api: httpx.Client, endpoint: str, body: dict, field: str, words: str
) -> None:
    response = api.post(endpoint, json=body)

    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", field]
    assert words in error["msg"]


def test_a_cron_schedule_shows_its_expression_zone_and_next_run(api: httpx.Client) -> None:
    created = api.post(
        "/schedule_training", json={"cron": "30 2 * * 0", "timezone": "America/New_York"}
    )

    assert created.status_code == 201, created.text
    schedule = _schedule(api, created.json()["schedule_id"])
    api.delete(f"/kill_scheduled_job/{created.json()['schedule_id']}")
    assert schedule is not None
    assert (schedule["cron"], schedule["timezone"], schedule["minutes"]) == (
        "30 2 * * 0",
        "America/New_York",
        None,
    )
    next_run = datetime.fromisoformat(schedule["next_run_time"])
    assert next_run.strftime("%A %H:%M") == "Sunday 02:30"  # crontab's 0: Sunday, in New York
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(days=7)
    assert schedule["runs"] == 0


def test_schedule_with_bad_hyperparameters_is_422_and_creates_nothing(api: httpx.Client) -> None:
    before = api.get("/scheduled_jobs").json()["schedules"]

    response = api.post(
        "/schedule_training", json={"minutes": 5, "hyperparameters": {"max_depth": 0}}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "max_depth"
    assert api.get("/scheduled_jobs").json()["schedules"] == before


def test_killing_an_unknown_schedule_is_404(api: httpx.Client) -> None:
    response = api.delete("/kill_scheduled_job/training-nope")

    assert response.status_code == 404
    assert "training-nope" in response.json()["detail"]


def _alerts_of(api: httpx.Client, schedule_id: str) -> list[dict]:
    alerts = api.get("/alerts", params={"limit": 1000}).json()["alerts"]
    return [a for a in alerts if (a["data"] or {}).get("schedule_id") == schedule_id]


def test_watch_alerts_that_no_model_is_registered(start_api) -> None:
    api, _ = start_api(redis_db=3, model_name=f"absent_{uuid.uuid4().hex[:8]}")
    schedule_id = api.post("/watch_model", json={"minutes": 1}).json()["schedule_id"]

    alert = wait_for(lambda: _alerts_of(api, schedule_id), timeout=15, what="a watch alert")[0]

    assert alert["level"] == "warning"
    assert "No version of iris is registered yet" in alert["text"]
    api.delete(f"/kill_scheduled_job/{schedule_id}")


def test_watch_alerts_when_the_model_is_stale(api: httpx.Client) -> None:
    api.post("/trigger_training", json={"hyperparameters": {"n_estimators": 5}})
    wait_for(lambda: api.get("/get_metrics").json()["latest_model"], timeout=60, what="a model")
    schedule_id = api.post("/watch_model", json={"minutes": 1}).json()["schedule_id"]

    alert = wait_for(lambda: _alerts_of(api, schedule_id), timeout=15, what="a watch alert")[0]

    assert alert["text"] == "Model has not been updated in the last 1 minutes."
    api.delete(f"/kill_scheduled_job/{schedule_id}")


def _runs(api: httpx.Client, schedule_id: str) -> int:
    schedule = _schedule(api, schedule_id)
    assert schedule is not None, f"schedule {schedule_id} is gone"
    return schedule["runs"]


def test_two_api_processes_run_each_scheduled_run_once(start_api) -> None:
    first, _ = start_api(redis_db=4)
    second, _ = start_api(redis_db=4)
    created = first.post("/watch_model", json={"minutes": 1}).json()
    schedule_id = created["schedule_id"]

    wait_for(lambda: _runs(second, schedule_id) >= 8, timeout=20, what="eight runs")
    elapsed = (datetime.now(UTC) - datetime.fromisoformat(created["created_at"])).total_seconds()
    runs = _runs(second, schedule_id)

    # Run n falls due n seconds after creation: eight runs take eight seconds, where two
    # schedulers that both carried out every run would have counted eight in about four.
    assert runs <= elapsed + 0.5, (runs, elapsed)

    # A run is counted when claimed and alerts a moment later, so the alerts catch up with
    # the runs counted before them and never pass the runs counted after them: one alert
    # per run. Two schedulers that both carried out each run would alert twice per run.
    def caught_up() -> list[dict] | None:
        alerts = _alerts_of(second, schedule_id)
        return alerts if len(alerts) >= runs else None

    alerts = wait_for(caught_up, timeout=5, what="an alert for each run counted")
    assert len(alerts) <= _runs(second, schedule_id)


def test_a_schedule_killed_on_one_replica_stops_on_every_replica(start_api) -> None:
    first, _ = start_api(redis_db=6)
    second, _ = start_api(redis_db=6)
    killed = first.post("/watch_model", json={"minutes": 1}).json()["schedule_id"]
    control = first.post("/watch_model", json={"minutes": 1}).json()["schedule_id"]
    wait_for(lambda: _runs(first, killed) >= 2, timeout=10, what="the schedule to run")

    assert second.delete(f"/kill_scheduled_job/{killed}").status_code == 200
    alerts_at_kill = len(_alerts_of(first, killed))
    control_at_kill = _runs(first, control)
    wait_for(
        lambda: _runs(first, control) >= control_at_kill + 3,
        timeout=10,
        what="three more runs of the schedule left running",
    )

    assert _schedule(first, killed) is None
    assert len(_alerts_of(first, killed)) <= alerts_at_kill + 1  # at most one run in flight
    first.delete(f"/kill_scheduled_job/{control}")


def test_schedules_survive_an_api_restart_and_coalesce_missed_runs(start_api) -> None:
    api, running = start_api(redis_db=5)
    schedule_id = api.post("/watch_model", json={"minutes": 2}).json()["schedule_id"]
    wait_for(lambda: _runs(api, schedule_id) >= 1, timeout=10, what="a first run")
    schedule = _schedule(api, schedule_id)
    assert schedule is not None
    api.close()

    running.process.terminate()
    running.process.wait(30)
    # Three more runs fall due (one every two seconds) while no API is up.
    missed_by = datetime.fromisoformat(schedule["next_run_time"]) + timedelta(seconds=4.5)
    wait_for(lambda: datetime.now(UTC) > missed_by, timeout=15, what="three runs to fall due")
    restarted, _ = start_api(redis_db=5)

    before = _runs(restarted, schedule_id)
    wait_for(
        lambda: _runs(restarted, schedule_id) >= before + 2,
        timeout=15,
        what="the schedule to fire after the restart",
    )
    log = running.log_path.read_text()
    assert f"schedule {schedule_id}:" in log and "coalesced into this one" in log
    restarted.delete(f"/kill_scheduled_job/{schedule_id}")
