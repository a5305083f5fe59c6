"""The API's background loops are restarted when they die, and say how they are doing;
stored records that do not parse are refused with the reason. In-process, no platform."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from helpers import run_async

from mlops.background import Background
from mlops.clients.schedule_store import ScheduleRecord
from mlops.services.job_records import MalformedJob, parse_job
from mlops.services.schedules import MalformedSchedule, checked


def test_a_loop_that_dies_is_restarted_and_its_health_says_why() -> None:
    async def scenario() -> tuple[dict, int]:
        background = Background(first_pause=0.01, max_pause=0.05)
        rounds = 0
        recovered = asyncio.Event()

        async def flaky() -> None:
            nonlocal rounds
            while background.running:
                rounds += 1
                if rounds <= 2:
                    raise KeyError(f"bad record {rounds}")
                background.completed_round()
                recovered.set()
                await background.pause(0.01)

        background.start("flaky", flaky)
        await asyncio.wait_for(recovered.wait(), timeout=5)
        health = background.health()["flaky"]
        await background.stop()
        return vars(health), rounds

    health, rounds = run_async(scenario())

    assert health["running"] is True
    assert health["restarts"] == 2
    assert health["last_error"] == "KeyError: 'bad record 2'"
    assert health["last_completed_at"] is not None and rounds >= 3


def test_stopping_ends_a_loop_that_keeps_dying() -> None:
    async def scenario() -> dict:
        background = Background(first_pause=0.01, max_pause=0.02)

        async def broken() -> None:
            raise RuntimeError("always")

        background.start("broken", broken)
        await asyncio.sleep(0.1)
        await background.stop(timeout=2)
        return vars(background.health()["broken"])

    health = run_async(scenario())

    assert health["restarts"] >= 2 and health["running"] is False


def _raw(**fields: object) -> dict[str, str]:
    record = {
        "job_id": "train-1",
        "status": "running",
        "hyperparameters": {},
        "source": "api",
        "created_at": datetime.now(UTC).isoformat(),
        **fields,
    }
    return {name: json.dumps(value) for name, value in record.items()}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({**_raw(), "status": "running"}, "'status' is not JSON"),
        (_raw(status="exploded"), "'status'"),
        (_raw(created_at="2026-01-01T00:00:00"), "'created_at'"),
        ({k: v for k, v in _raw().items() if k != "source"}, "'source'"),
        ({}, "its record is gone"),
    ],
)
def test_a_job_record_that_does_not_parse_says_what_is_wrong(raw, says) -> None:
    with pytest.raises(MalformedJob, match=says):
        parse_job(raw)


def test_a_valid_job_record_parses() -> None:
    assert parse_job(_raw(accuracy=0.9)).accuracy == 0.9


def _schedule(**fields: object) -> str:
    record = {
        "schedule_id": "watch-1",
        "kind": "watch",
        "minutes": 5,
        "created_at": "2026-01-01T00:00:00+00:00",  # fixed: the test ids stay the same
        "params": {},
        **fields,
    }
    return json.dumps(record)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (_schedule(minutes=0), "minutes must be 1 to 10080"),
        (_schedule(minutes=10_081), "minutes must be 1 to 10080"),
        (_schedule(minutes="5"), "minutes must be"),
        (_schedule(created_at="2026-01-01T00:00:00"), "no time zone"),
        (_schedule(kind="cron"), "unknown schedule kind"),
        (_schedule(params=[1]), "params must be an object"),
        ("{'minutes': 1", "not a schedule record"),
        (json.dumps({"kind": "watch"}), "not a schedule record"),
    ],
)
def test_a_schedule_record_that_does_not_parse_says_what_is_wrong(text, says) -> None:
    with pytest.raises(ValueError, match=says):
        ScheduleRecord.from_json(text)


@pytest.mark.parametrize(
    "params",
    [{"tune": {"trials": "many"}}, {"hyperparameters": [1]}, {"threshold": "high"}],
)
def test_a_schedule_whose_parameters_no_run_can_use_is_malformed(params) -> None:
    record = ScheduleRecord.from_json(_schedule(kind="training", params=params))

    with pytest.raises(MalformedSchedule, match="unusable parameters"):
        checked(record)
