"""Bad records in Redis never stop a background loop: they are moved aside, and the
valid ones go on.

Each kind of bad record a person, an old version or a bug could leave is written
straight into a real Valkey beside valid ones, under an API of its own: the scheduler
still fires the valid schedule, the job reconciler still settles the valid job, `/ready`
shows both loops running, and `/quarantine` lists every bad record with its reason.
Before, any one of them stopped its loop until a restart, and again after it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from helpers import wait_for
from redis import Redis

from mlops.clients.redis.keys import JOB_ACTIVE, JOB_INDEX, job_key
from mlops.clients.schedule_store import SCHEDULES
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

REDIS_DB = 14  # shared with test_alerts' replay test, which writes alerts only


def _job(job_id: str, **fields: object) -> dict[str, str]:
    record = {
        "job_id": job_id,
        "status": "running",
        "hyperparameters": {},
        "source": "api",
        "created_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        **fields,
    }
    return {name: json.dumps(value) for name, value in record.items()}


def _write_job(redis: Redis, job_id: str, fields: dict[str, str] | None) -> None:
    if fields:
        redis.hset(job_key(job_id), mapping=fields)
    redis.sadd(JOB_ACTIVE, job_id)
    redis.zadd(JOB_INDEX, {job_id: datetime.now(UTC).timestamp()})


def _schedule(schedule_id: str, **fields: object) -> str:
    record = {
        "schedule_id": schedule_id,
        "kind": "watch",
        "minutes": 1,
        "created_at": datetime.now(UTC).isoformat(),
        "params": {},
        **fields,
    }
    return json.dumps(record)


BAD_JOBS = {
    "bad-not-json": {**_job("bad-not-json"), "status": "running"},  # a bare word
    "bad-status": _job("bad-status", status="exploded"),
    "bad-naive-time": _job("bad-naive-time", created_at="2026-01-01T00:00:00"),
    "bad-no-record": None,  # listed as active, its record gone
}
BAD_SCHEDULES = {
    "watch-zero-minutes": _schedule("watch-zero-minutes", minutes=0),
    "watch-naive-time": _schedule("watch-naive-time", created_at="2026-01-01T00:00:00"),
    "training-bad-tune": _schedule(
        "training-bad-tune", kind="training", params={"tune": {"trials": "many"}}
    ),
    "watch-not-json": "{'minutes': 1",
}


def test_bad_records_are_quarantined_and_the_loops_go_on(
    start_api, settings: PlatformSettings
) -> None:
    api, _ = start_api(redis_db=REDIS_DB)
    redis = Redis.from_url(
        f"{settings.redis_url.rsplit('/', 1)[0]}/{REDIS_DB}",
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        decode_responses=True,
    )
    # A valid job Ray never heard of, created long ago: the reconciler must fail it.
    redis.hset(SCHEDULES, mapping=BAD_SCHEDULES)
    for job_id, fields in BAD_JOBS.items():
        _write_job(redis, job_id, fields)
    _write_job(redis, "train-lost", _job("train-lost"))
    valid = api.post("/watch_model", json={"minutes": 1}).json()["schedule_id"]

    def runs() -> int:
        listed = api.get("/scheduled_jobs").json()["schedules"]
        return next(s["runs"] for s in listed if s["schedule_id"] == valid)

    wait_for(lambda: runs() >= 3, timeout=30, what="the valid schedule to fire")
    lost = wait_for(
        lambda: (job := api.get("/jobs/train-lost").json())["status"] == "failed" and job,
        timeout=30,
        what="the valid job to be reconciled",
    )

    assert "Ray has no record of this job" in lost["error"]
    quarantined = api.get("/quarantine").json()["records"]
    assert {(r["kind"], r["record_id"]) for r in quarantined} == {
        *(("job", job_id) for job_id in BAD_JOBS),
        *(("schedule", schedule_id) for schedule_id in BAD_SCHEDULES),
    }
    reasons = {r["record_id"]: r["reason"] for r in quarantined}
    assert "minutes must be 1 to 10080" in reasons["watch-zero-minutes"]
    assert "no time zone" in reasons["watch-naive-time"]
    assert "tune" in reasons["training-bad-tune"]
    assert "'status' is not JSON" in reasons["bad-not-json"]
    bad_status = next(r for r in quarantined if r["record_id"] == "bad-status")
    assert json.loads(bad_status["fields"]["status"]) == "exploded"  # kept as it was
    # Out of the loops' way, and out of every listing.
    assert not redis.sismember(JOB_ACTIVE, "bad-status")
    assert not redis.hexists(SCHEDULES, "watch-zero-minutes")
    assert [s["schedule_id"] for s in api.get("/scheduled_jobs").json()["schedules"]] == [valid]
    assert api.get("/jobs").status_code == 200
    ready = api.get("/ready").json()
    for loop in ("scheduler", "job-reconciler"):
        assert ready["loops"][loop]["running"] is True
        assert ready["loops"][loop]["last_completed_at"] is not None
        assert ready["loops"][loop]["restarts"] == 0
    api.delete(f"/kill_scheduled_job/{valid}")


def test_a_malformed_job_record_is_a_409_naming_the_field(
    start_api, settings: PlatformSettings
) -> None:
    api, _ = start_api(redis_db=REDIS_DB)
    redis = Redis.from_url(
        f"{settings.redis_url.rsplit('/', 1)[0]}/{REDIS_DB}",
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
    )
    # Finished, so no loop moves it: only a reader meets it.
    redis.hset(job_key("done-bad"), mapping=_job("done-bad", status="succeeded", accuracy="high"))

    response = api.get("/jobs/done-bad")

    assert response.status_code == 409
    assert "accuracy" in response.json()["detail"]
    assert api.get("/jobs/never-was").status_code == 404
