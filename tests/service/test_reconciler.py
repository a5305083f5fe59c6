"""The job reconciler in-process: real job records in a real Valkey, and an HTTP server
that answers as Ray's Jobs API does (and as MLflow's registry does, with no versions):
a stand-in, so the edge cases run in seconds. The platform tier reconciles real Ray jobs
(test_training.py, test_outcome_recovery.py, test_quarantine.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from helpers import free_port, run_async
from redis.asyncio import Redis

from mlops.clients.dataset_headers import DatasetHeaders
from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.quarantine import Quarantine
from mlops.clients.ray_jobs import RayJobsClient
from mlops.clients.redis import AlertStream, ChampionMoves, JobStore
from mlops.clients.redis.keys import JOB_INDEX, job_key
from mlops.clients.redis.model_definitions import ModelDefinitions
from mlops.contracts.jobs import JobStatus
from mlops.ml.data import s3_config
from mlops.services.job_reconciler import JobReconciler
from mlops.services.model_catalog import ModelCatalog
from mlops.settings.platform import PlatformSettings


@dataclass
class Ray:
    """Ray's Jobs API as the reconciler reads it: one info per job, 404 for the rest."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)

    async def info(self, request: web.Request) -> web.Response:
        found = self.jobs.get(request.match_info["job_id"])
        return web.json_response(found) if found else web.json_response({}, status=404)

    async def stop(self, request: web.Request) -> web.Response:
        self.stopped.append(request.match_info["job_id"])
        return web.json_response({"stopped": True})

    async def no_versions(self, request: web.Request) -> web.Response:
        return web.json_response({"model_versions": []})


@dataclass
class Parts:
    jobs: JobStore
    alerts: AlertStream
    redis: Redis
    reconcilers: list[JobReconciler]


@asynccontextmanager
async def _reconcilers(valkey_url: str, ray: Ray, count: int = 1) -> AsyncIterator[Parts]:
    app = web.Application()
    app.router.add_get("/api/jobs/{job_id}", ray.info)
    app.router.add_post("/api/jobs/{job_id}/stop", ray.stop)
    app.router.add_get("/api/2.0/mlflow/model-versions/search", ray.no_versions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    settings = PlatformSettings(
        environment="development",
        redis_url=valkey_url,
        job_max_seconds=600,
        tune_time_budget_seconds=300,
    )
    redis = Redis.from_url(valkey_url, decode_responses=True)
    await redis.flushdb()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            jobs = JobStore(redis, history=100)
            alerts = AlertStream(redis, max_len=100)
            moves = ChampionMoves(redis)
            catalog = ModelCatalog(
                settings=settings,
                definitions=ModelDefinitions(redis),
                moves=moves,
                headers=DatasetHeaders(s3_config(settings).client),
            )
            reconcilers = [
                JobReconciler(
                    settings=settings,
                    ray=RayJobsClient(http, base, None),
                    jobs=jobs,
                    registry=MlflowRegistry(http, base),
                    alerts=alerts,
                    history=moves,
                    quarantine=Quarantine(redis),
                    catalog=catalog,
                )
                for _ in range(count)
            ]
            yield Parts(jobs, alerts, redis, reconcilers)
    finally:
        await redis.aclose()
        await runner.cleanup()


async def _job(parts: Parts, job_id: str, *, age: timedelta) -> None:
    """A pending record created `age` ago."""
    await parts.jobs.create(
        job_id, model="iris", fields={"kind": "training", "source": "api", "hyperparameters": {}}
    )
    created = (datetime.now(UTC) - age).isoformat()
    await parts.redis.hset(job_key(job_id), "created_at", json.dumps(created))


async def _status(parts: Parts, job_id: str) -> tuple[str, str | None]:
    record = await parts.jobs.get(job_id) or {}
    error = json.loads(record["error"]) if "error" in record else None
    return json.loads(record["status"]), error


def _ray_job(status: str, **extra: Any) -> dict[str, Any]:
    now_ms = datetime.now(UTC).timestamp() * 1000
    return {"status": status, "start_time": now_ms - 5000, **extra}


def test_a_job_ray_lost_is_failed_with_the_reason_once_its_submission_had_time(
    valkey_url: str,
) -> None:
    async def scenario() -> tuple[Any, ...]:
        async with _reconcilers(valkey_url, Ray()) as parts:
            await _job(parts, "train-lost", age=timedelta(minutes=5))
            await _job(parts, "train-just-submitted", age=timedelta(seconds=5))
            await parts.reconcilers[0].reconcile()
            return (
                await _status(parts, "train-lost"),
                await _status(parts, "train-just-submitted"),
                [a.text for a in await parts.alerts.recent(10)],
            )

    lost, fresh, alerts = run_async(scenario())

    assert lost == ("failed", "Ray has no record of this job (cluster restarted?)")
    assert fresh == ("pending", None)  # its submission may still be on its way
    assert alerts == [f"Training job train-lost failed: {lost[1]}"]


def test_a_job_ray_runs_is_marked_running_and_left_running(valkey_url: str) -> None:
    ray = Ray({"train-1": _ray_job("RUNNING")})

    async def scenario() -> tuple[Any, ...]:
        async with _reconcilers(valkey_url, ray) as parts:
            await _job(parts, "train-1", age=timedelta(seconds=30))
            await parts.reconcilers[0].reconcile()
            record = await parts.jobs.get("train-1") or {}
            return await _status(parts, "train-1"), "started_at" in record

    (status, _), started = run_async(scenario())

    assert status == "running" and started


def test_the_first_round_lists_jobs_of_earlier_releases_under_their_model(
    valkey_url: str,
) -> None:
    async def scenario() -> list[str]:
        async with _reconcilers(valkey_url, Ray()) as parts:
            # Recorded before models had names: in the one index, with no model.
            record = {"job_id": "train-old", "kind": "training", "status": "succeeded",
                      "source": "api", "created_at": datetime.now(UTC).isoformat()}  # fmt: skip
            await parts.redis.hset(
                job_key("train-old"), mapping={k: json.dumps(v) for k, v in record.items()}
            )
            await parts.redis.zadd(JOB_INDEX, {"train-old": 1.0})
            await parts.reconcilers[0].reconcile()
            return list(await parts.jobs.recent(10, model="iris"))  # the default model

    assert run_async(scenario()) == ["train-old"]


@pytest.mark.parametrize("replicas", [1, 3])
def test_a_job_that_died_outside_our_code_is_failed_and_alerted_once_across_replicas(
    valkey_url: str, replicas: int
) -> None:
    ray = Ray({"train-1": _ray_job("FAILED", message="worker killed", end_time=1)})

    async def scenario() -> tuple[Any, ...]:
        async with _reconcilers(valkey_url, ray, count=replicas) as parts:
            await _job(parts, "train-1", age=timedelta(seconds=30))
            for reconciler in parts.reconcilers:  # every API replica runs its round
                await reconciler.reconcile()
            totals, _ = await parts.jobs.totals()
            return await _status(parts, "train-1"), await parts.alerts.recent(10), totals

    status, alerts, totals = run_async(scenario())

    assert status == ("failed", "worker killed")
    assert [a.text for a in alerts] == ["Training job train-1 failed: worker killed"]
    assert totals == {"failed": 1}


def test_a_job_running_past_its_limit_is_stopped_and_failed(valkey_url: str) -> None:
    ray = Ray({"train-slow": _ray_job("RUNNING")})

    async def scenario() -> tuple[Any, ...]:
        async with _reconcilers(valkey_url, ray) as parts:
            await _job(parts, "train-slow", age=timedelta(minutes=11))  # limit: 600 s
            await parts.reconcilers[0].reconcile()
            return await _status(parts, "train-slow")

    status, error = run_async(scenario())

    assert ray.stopped == ["train-slow"]
    assert status == "failed"
    assert error == "stopped after running longer than MLOPS_JOB_MAX_SECONDS=600 s"


def test_a_job_that_recorded_its_own_outcome_is_left_as_it_said(valkey_url: str) -> None:
    ray = Ray({"train-1": _ray_job("SUCCEEDED", end_time=1)})

    async def scenario() -> tuple[Any, ...]:
        async with _reconcilers(valkey_url, ray) as parts:
            await _job(parts, "train-1", age=timedelta(seconds=30))
            await parts.jobs.finish(
                "train-1", JobStatus.SUCCEEDED, 3.0, {"model_version": "4", "error": None}
            )
            await parts.reconcilers[0].reconcile()
            record = await parts.jobs.get("train-1") or {}
            return json.loads(record["status"]), json.loads(record["model_version"])

    assert run_async(scenario()) == ("succeeded", "4")


def test_a_record_that_does_not_parse_is_moved_aside_and_the_others_go_on(
    valkey_url: str,
) -> None:
    async def scenario() -> tuple[Any, ...]:
        async with _reconcilers(valkey_url, Ray()) as parts:
            await _job(parts, "train-bad", age=timedelta(minutes=5))
            await parts.redis.hset(job_key("train-bad"), "status", "not json")
            await _job(parts, "train-lost", age=timedelta(minutes=5))
            await parts.reconcilers[0].reconcile()
            quarantined = await Quarantine(parts.redis).entries(10)
            return await _status(parts, "train-lost"), [q.record_id for q in quarantined]

    (status, _), quarantined = run_async(scenario())

    assert status == "failed"
    assert quarantined == ["train-bad"]
