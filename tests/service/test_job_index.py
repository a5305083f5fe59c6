"""Job records indexed per model, in a real Valkey: a model's jobs stay listed however
often other models train, and jobs recorded before the per-model indexes join them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from helpers import run_async
from redis.asyncio import Redis

from mlops.clients.redis import JobStore
from mlops.clients.redis.keys import JOB_INDEX, job_key
from mlops.contracts.jobs import JobStatus, NewJob

HISTORY = 10
NEW_JOB = NewJob(kind="training", source="api", hyperparameters={})


@asynccontextmanager
async def _store(valkey_url: str) -> AsyncIterator[tuple[JobStore, Redis]]:
    redis = Redis.from_url(valkey_url, decode_responses=True)
    await redis.flushdb()
    try:
        yield JobStore(redis, history=HISTORY), redis
    finally:
        await redis.aclose()


def _models(records: dict[str, dict[str, str]]) -> set[str]:
    return {json.loads(record["model"]) for record in records.values()}


def test_a_model_keeps_its_jobs_however_often_another_trains(valkey_url: str) -> None:
    # One index for all, trimmed to the newest 1,000: a model trained every minute
    # pushed a weekly model's jobs out of its own list.
    async def scenario() -> None:
        async with _store(valkey_url) as (jobs, redis):
            for n in range(3):
                await jobs.create(f"wine-{n}", model="wine", fields=NEW_JOB)
            for n in range(3 * HISTORY):
                await jobs.create(f"iris-{n}", model="iris", fields=NEW_JOB)

            wine = await jobs.recent(50, model="wine")
            iris = await jobs.recent(50, model="iris")
            everything = await jobs.recent(50)

            assert list(wine) == ["wine-2", "wine-1", "wine-0"]
            assert list(iris) == [f"iris-{n}" for n in range(3 * HISTORY - 1, 2 * HISTORY - 1, -1)]
            assert len(everything) == HISTORY + 3 and _models(everything) == {"wine", "iris"}
            assert not await redis.exists(job_key("iris-0"))  # forgotten, not only unlisted

    run_async(scenario())


def test_jobs_recorded_before_the_model_indexes_join_their_models(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as (jobs, redis):
            # As earlier releases recorded them: in the one index, with a model or none.
            for job_id, model in (("old-1", None), ("old-2", "wine"), ("old-3", None)):
                fields = {**NEW_JOB, "job_id": job_id} | ({"model": model} if model else {})
                stored = {key: json.dumps(value) for key, value in fields.items()}
                await redis.hset(job_key(job_id), mapping=stored)
                await redis.zadd(JOB_INDEX, {job_id: float(job_id[-1])})
            await jobs.create("new-1", model="iris", fields=NEW_JOB)

            indexed = await jobs.index_by_model("iris")
            again = await jobs.index_by_model("iris")

            assert (indexed, again) == (3, 0)
            iris = await jobs.recent(50, model="iris")
            assert list(iris) == ["new-1", "old-3", "old-1"]
            assert _models(iris) == {"iris"}  # the default model's from now on
            assert list(await jobs.recent(50, model="wine")) == ["old-2"]

    run_async(scenario())


def test_a_job_whose_submission_failed_leaves_no_trace(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as (jobs, redis):
            await jobs.create("lost", model="wine", fields=NEW_JOB)

            await jobs.delete("lost", "wine")

            assert await jobs.recent(50, model="wine") == {}
            assert await jobs.recent(50) == {}
            assert not await redis.exists(job_key("lost"))

    run_async(scenario())


def test_a_jobs_status_is_read_alone_as_its_work_checks_it(valkey_url: str) -> None:
    # The trainer's work reads it at each phase: stopped in Ray before the job's
    # entrypoint could say so, it ends there (ml/trainer.py).
    async def scenario() -> None:
        async with _store(valkey_url) as (jobs, _):
            await jobs.create("train-1", model="iris", fields=NEW_JOB)
            assert await jobs.status("train-1") is JobStatus.PENDING

            await jobs.finish("train-1", JobStatus.STOPPED, 1.0, {"error": "stopped"})

            assert await jobs.status("train-1") is JobStatus.STOPPED
            assert await jobs.status("train-never") is None

    run_async(scenario())
