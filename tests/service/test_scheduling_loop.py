"""The scheduling loop in-process: schedules in a real Valkey, "model is stale" watches
whose check reads a stand-in of MLflow's registry (an HTTP server with no versions), so
runs, claims and coalescing are seen in seconds. The platform tier runs training
schedules against real Ray (test_schedules.py, test_quarantine.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiohttp import web
from helpers import free_port, run_async
from redis.asyncio import Redis

from mlops.background import Background
from mlops.clients.dataset_headers import DatasetHeaders
from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.quarantine import Quarantine
from mlops.clients.ray_jobs import RayJobsClient
from mlops.clients.redis import AlertStream, ChampionMoves, DriftSamples, JobStore
from mlops.clients.redis.model_definitions import ModelDefinitions
from mlops.clients.redis.trainer_queue import TrainerQueue
from mlops.clients.schedule_store import SCHEDULES, ScheduleRecord, ScheduleStore
from mlops.contracts.alerts import Alert
from mlops.ml.data import s3_config
from mlops.services.drift import DriftMonitor
from mlops.services.model_catalog import ModelCatalog
from mlops.services.schedules import Schedules
from mlops.services.training import Training
from mlops.settings.platform import PlatformSettings
from mlops.telemetry import Instruments

PERIOD_MINUTES = 1  # a minute is a minute here: nothing falls due during a test


async def _no_versions(request: web.Request) -> web.Response:
    return web.json_response({"model_versions": []})


@asynccontextmanager
async def _replicas(valkey_url: str, count: int) -> AsyncIterator[tuple[Redis, list[Schedules]]]:
    app = web.Application()
    app.router.add_get("/api/2.0/mlflow/model-versions/search", _no_versions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    settings = PlatformSettings(environment="development", redis_url=valkey_url)
    redis = Redis.from_url(valkey_url, decode_responses=True)
    await redis.flushdb()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            registry = MlflowRegistry(http, base)
            alerts = AlertStream(redis, max_len=100)
            samples = DriftSamples(redis, max_rows=10)
            drift = DriftMonitor(
                settings=settings, registry=registry, samples=samples, alerts=alerts
            )
            headers = DatasetHeaders(s3_config(settings).client)
            training = Training(
                settings=settings,
                ray=RayJobsClient(http, base, None),
                jobs=JobStore(redis, history=10),
                registry=registry,
                headers=headers,
                trainer_queue=TrainerQueue(redis),
            )
            replicas = [
                Schedules(
                    settings=settings,
                    store=ScheduleStore(redis),
                    quarantine=Quarantine(redis),
                    training=training,
                    catalog=ModelCatalog(
                        settings=settings,
                        definitions=ModelDefinitions(redis),
                        moves=ChampionMoves(redis),
                        headers=headers,
                    ),
                    drift=drift,
                    registry=registry,
                    alerts=alerts,
                    instruments=Instruments(),
                )
                for _ in range(count)
            ]
            yield redis, replicas
    finally:
        await redis.aclose()
        await runner.cleanup()


async def _watch(
    redis: Redis, *, created_ago: timedelta, last_run: int | None, cron: str | None = None
) -> str:
    """A watch created `created_ago`, whose last run (if any) was number `last_run`;
    every PERIOD_MINUTES, or at the times of `cron`."""
    record = ScheduleRecord(
        schedule_id="watch-1",
        kind="watch",
        minutes=None if cron else PERIOD_MINUTES,
        created_at=datetime.now(UTC) - created_ago,
        params={},
        cron=cron,
        timezone="UTC" if cron else None,
    )
    store = ScheduleStore(redis)
    assert await store.add(record, limit=10)
    if last_run is not None:
        await store.record_run(record.schedule_id, last_run, datetime.now(UTC))
    return record.schedule_id


async def _run_loops(replicas: list[Schedules], redis: Redis) -> list[Alert]:
    """Every replica's loop, until each has done its first round (in which whatever had
    fallen due was claimed and carried out, by one of them); the alerts then."""
    background = Background()
    for i, schedules in enumerate(replicas):
        background.start(f"scheduler-{i}", functools.partial(schedules.run, background))
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not all(h.last_completed_at for h in background.health().values()):
            assert asyncio.get_running_loop().time() < deadline, "a loop did no round"
            await asyncio.sleep(0.05)
        return await AlertStream(redis, max_len=100).recent(10)
    finally:
        await background.stop()


def test_runs_missed_while_no_api_was_up_are_coalesced_into_one(valkey_url: str) -> None:
    async def scenario() -> tuple[list[Alert], dict]:
        async with _replicas(valkey_url, 1) as (redis, replicas):
            schedule_id = await _watch(redis, created_ago=timedelta(minutes=5.5), last_run=1)
            alerts = await _run_loops(replicas, redis)
            counts = await ScheduleStore(redis).run_counts([schedule_id])
            return alerts, counts

    alerts, counts = run_async(scenario())

    assert [a.text for a in alerts] == [
        "No version of iris is registered yet: trigger a training run to create one."
    ]
    assert counts["watch-1"].last_run == 5  # runs 2, 3 and 4 folded into run 5


def test_cron_runs_missed_while_no_api_was_up_become_the_latest_one(valkey_url: str) -> None:
    now = datetime.now(UTC)
    created_ago = timedelta(minutes=3, seconds=30)
    first = (now - created_ago).replace(second=0, microsecond=0) + timedelta(minutes=1)

    async def scenario() -> tuple[list[Alert], dict]:
        async with _replicas(valkey_url, 2) as (redis, replicas):
            schedule_id = await _watch(
                redis, created_ago=created_ago, last_run=int(first.timestamp()), cron="* * * * *"
            )
            alerts = await _run_loops(replicas, redis)
            return alerts, await ScheduleStore(redis).run_counts([schedule_id])

    alerts, counts = run_async(scenario())

    latest = datetime.now(UTC).replace(second=0, microsecond=0)
    assert len(alerts) == 1  # one run for the minutes missed, by one of the two replicas
    assert counts["watch-1"].last_run in {int(latest.timestamp()), int(latest.timestamp()) - 60}
    assert counts["watch-1"].runs == 2


def test_a_run_is_carried_out_by_one_of_three_replicas(valkey_url: str) -> None:
    async def scenario() -> list[Alert]:
        async with _replicas(valkey_url, 3) as (redis, replicas):
            await _watch(redis, created_ago=timedelta(minutes=1.5), last_run=None)
            return await _run_loops(replicas, redis)

    alerts = run_async(scenario())

    assert len(alerts) == 1  # the other two lost the claim


BAD_CRON = json.dumps(
    {"schedule_id": "watch-bad", "kind": "watch", "cron": "0 0 30 2 *", "timezone": "UTC",
     "created_at": "2026-12-04T00:00:00+00:00", "params": {}}
)  # fmt: skip


@pytest.mark.parametrize("bad", ['{"minutes": 0}', BAD_CRON], ids=["zero-minutes", "never-fires"])
def test_a_bad_schedule_is_moved_aside_and_the_good_one_still_runs(
    valkey_url: str, bad: str
) -> None:
    async def scenario() -> tuple[list[Alert], list[str]]:
        async with _replicas(valkey_url, 1) as (redis, replicas):
            await redis.hset(SCHEDULES, "watch-bad", bad)
            await _watch(redis, created_ago=timedelta(minutes=1.5), last_run=None)
            alerts = await _run_loops(replicas, redis)
            moved = [q.record_id for q in await Quarantine(redis).entries(10)]
            return alerts, moved

    alerts, moved = run_async(scenario())

    assert len(alerts) == 1
    assert moved == ["watch-bad"]
