"""Stopping: background loops end for sure, and the API process exits promptly and cleanly.

On Python 3.11 a single cancel can be lost inside redis-py (its sends go through
`asyncio.wait_for`, which drops a cancellation that lands as the send completes:
CPython gh-86296); the API then hung on SIGTERM until it was killed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import signal

import pytest
from helpers import run_async

from mlops.background import Background
from mlops.clients import redis as redis_client
from mlops.settings.platform import PlatformSettings


async def _busy_with_redis(settings: PlatformSettings, background: Background) -> None:
    redis = redis_client.connect(settings)
    try:
        while background.running:
            await redis.zrevrange("mlops:jobs", 0, 49)
    finally:
        await redis.aclose()


def test_stop_ends_a_redis_loop_wherever_the_cancel_lands(
    platform, settings: PlatformSettings
) -> None:
    async def trials() -> list[float]:
        loop = asyncio.get_running_loop()
        durations = []
        for _ in range(100):
            background = Background()
            background.start(
                "redis-loop", functools.partial(_busy_with_redis, settings, background)
            )
            await asyncio.sleep(random.uniform(0.001, 0.02))
            started = loop.time()
            await background.stop(timeout=3)
            durations.append(loop.time() - started)
        return durations

    durations = run_async(trials())

    assert max(durations) < 0.5, max(durations)


def test_a_loop_that_refuses_to_stop_is_named_with_its_await_and_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stubborn(release: asyncio.Event) -> None:
        while not release.is_set():  # ignores background.running, and cancels
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    async def scenario() -> tuple[bool, float]:
        release = asyncio.Event()
        background = Background()
        background.start("stubborn-loop", lambda: stubborn(release))
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await background.stop(timeout=0.5)
        took = loop.time() - started
        release.set()
        await asyncio.sleep(0.1)
        return background.running, took

    with caplog.at_level(logging.ERROR, logger="mlops.background"):
        running, took = run_async(scenario())

    # It waited out its timeout, and then gave up on the loop instead of hanging on it.
    assert not running and 0.5 <= took < 5
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith("stubborn-loop did not stop in 0.5s; it awaits:")
    assert "in stubborn" in message and "in wait" in message


def test_the_api_stops_at_once_and_cleanly_after_using_redis(start_api) -> None:
    for _ in range(3):
        api, running = start_api(redis_db=12)
        assert api.post("/watch_model", json={"minutes": 1}).status_code == 201
        assert api.get("/alerts").status_code == 200
        api.close()

        running.process.terminate()
        code = running.process.wait(15)

        # After a clean shutdown uvicorn re-raises the SIGTERM it caught, so that is
        # the exit status; a kill would show as -9, a crash as a positive code.
        assert code == -signal.SIGTERM, running.tail()
        log = running.log_path.read_text()
        assert "Application shutdown complete" in log and "did not stop" not in log
