"""An upgrade from a platform of one unnamed model: its registered model, champion,
champion history and schedules become the default model's on the first start."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from helpers import redis_db_url, wait_for, wait_for_job
from redis import Redis

from mlops.clients.redis.keys import MODEL_DEFINITIONS, champion_moves_key
from mlops.clients.schedule_store import SCHEDULES
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

DB = 9


def test_the_first_start_gives_the_default_model_what_the_platform_had(
    start_api, settings: PlatformSettings, champion_served: None
) -> None:
    registered = f"legacy_{uuid.uuid4().hex[:6]}"
    before, running = start_api(redis_db=DB, model_name=registered)
    # Two versions; the first, as the first, is the champion. Seeded: an unseeded forest's
    # score varies from run to run, and whether the second beats the first with it.
    for n_estimators in (5, 7):
        body = {"hyperparameters": {"n_estimators": n_estimators, "random_state": 0}}
        job = wait_for_job(before, before.post("/trigger_training", json=body).json()["job_id"])
        assert job["status"] == "succeeded", job
        assert job["promoted"] or n_estimators == 7, job
    champion = before.get("/models/iris").json()["champion"]["version"]
    moves = before.get("/models/iris/history").json()["moves"]
    running.process.terminate()  # the old platform stops
    running.process.wait(30)
    # Redis as the platform of one model left it: no definitions, the champion's history
    # under the registered model's name, and a schedule that names no model.
    password = settings.redis_password
    with Redis.from_url(
        redis_db_url(settings, DB),
        password=password.get_secret_value() if password else None,
        decode_responses=True,
    ) as redis:
        redis.delete(MODEL_DEFINITIONS)
        redis.rename(champion_moves_key("iris"), champion_moves_key(registered))
        legacy_watch = {
            "schedule_id": "watch-legacy",
            "kind": "watch",
            "minutes": 600,
            "created_at": datetime.now(UTC).isoformat(),
            "params": {},
        }
        redis.hset(SCHEDULES, "watch-legacy", json.dumps(legacy_watch))

    after, _ = start_api(redis_db=DB, model_name=registered)  # the upgraded platform
    models = after.get("/models").json()
    history = after.get("/models/iris/history").json()["moves"]
    schedules = after.get("/scheduled_jobs").json()["schedules"]
    answer = wait_for(
        lambda: (
            (r := after.post("/inference", json={"input_data": [5.1, 3.5, 1.4, 0.2]})).is_success
            and r.json()
        ),
        timeout=120,
        what="the default model to answer",
    )

    iris = next(m for m in models["models"] if m["name"] == "iris")
    assert models["default_model"] == "iris"
    assert iris["registered_model"] == registered
    assert iris["champion"]["version"] == champion
    assert history == moves and len(history) >= 1
    assert [(s["schedule_id"], s["model"]) for s in schedules] == [("watch-legacy", "iris")]
    assert (answer["model"], answer["model_version"]) == ("iris", champion)
