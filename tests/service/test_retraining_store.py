"""The retraining loop's state and its share of the alert stream, in a real Valkey: one
retraining in flight per model and one per cooldown, whoever asks; each alert read by
one consumer of the group; an alert taken and never acknowledged read again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from helpers import run_async
from redis.asyncio import Redis

from mlops.clients.redis import AlertStream
from mlops.clients.redis.keys import ALERT_STREAM
from mlops.clients.redis.retraining import Claim, RetrainingStore
from mlops.contracts.alerts import AlertKind
from mlops.contracts.retraining import Retraining, RetrainingStep, Step, Trigger

T = TypeVar("T")
GROUP = "retraining"


def _on_valkey(valkey_url: str, test: Callable[[Redis], Awaitable[T]]) -> T:
    async def go() -> T:
        redis = Redis.from_url(valkey_url, decode_responses=True)
        try:
            await redis.flushdb()
            return await test(redis)
        finally:
            await redis.aclose()

    return run_async(go())


def _retraining(model: str = "iris", **fields: object) -> Retraining:
    values: dict[str, object] = {
        "model": model,
        "trigger": Trigger.DRIFT,
        "since": datetime.now(UTC),
        "cause": "Input drift on f1",
        **fields,
    }
    return Retraining.model_validate(values)


def test_one_retraining_in_flight_per_model_and_one_per_cooldown(valkey_url: str) -> None:
    async def test(redis: Redis) -> list[object]:
        store = RetrainingStore(redis)
        first, second = _retraining(), _retraining(trigger=Trigger.LIVE)
        claims = await asyncio.gather(*(store.claim(r, 60) for r in (first, second)))
        other_model = await store.claim(_retraining("wine"), 60)
        concluded = await asyncio.gather(store.conclude(first), store.conclude(first))
        after_conclusion = await store.claim(second, 60)
        await redis.delete("mlops:retraining:cooldown:iris")  # the cooldown runs out
        after_cooldown = await store.claim(second, 60)
        return [sorted(claims), other_model, sorted(concluded), after_conclusion, after_cooldown]

    claims, other_model, concluded, after_conclusion, after_cooldown = _on_valkey(valkey_url, test)

    assert claims == [Claim.CLAIMED, Claim.IN_FLIGHT]
    assert other_model is Claim.CLAIMED
    assert concluded == [False, True]  # one caller concludes it
    assert after_conclusion is Claim.COOLING
    assert after_cooldown is Claim.CLAIMED


def test_a_retraining_is_replaced_only_by_the_process_that_read_it(valkey_url: str) -> None:
    async def test(redis: Redis) -> tuple[bool, bool, list[Retraining]]:
        store = RetrainingStore(redis)
        claimed = _retraining()
        await store.claim(claimed, 60)
        started = claimed.model_copy(update={"job_id": "train-1"})
        replaced = await store.replace(claimed, started)
        stale = await store.replace(claimed, claimed.model_copy(update={"job_id": "train-2"}))
        return replaced, stale, await store.in_flight()

    replaced, stale, in_flight = _on_valkey(valkey_url, test)

    assert (replaced, stale) == (True, False)
    assert [r.job_id for r in in_flight] == ["train-1"]


def test_a_canary_s_retraining_is_taken_once_and_steps_read_newest_first(
    valkey_url: str,
) -> None:
    async def test(redis: Redis) -> tuple[list[object], list[RetrainingStep]]:
        store = RetrainingStore(redis)
        await store.watch_rollout("r1", _retraining(job_id="train-1", version="4"))
        taken = await asyncio.gather(*(store.take_rollout("r1") for _ in range(3)))
        for step in (Step.STARTED, Step.CANARY_STARTED):
            entry = RetrainingStep(
                at=datetime.now(UTC), step=step, trigger=Trigger.DRIFT, detail=str(step)
            )
            await store.record("iris", entry)
        return [t.version if t else None for t in taken], await store.steps("iris", 10)

    taken, steps = _on_valkey(valkey_url, test)

    assert sorted(taken, key=str) == ["4", None, None]
    assert [s.step for s in steps] == [Step.CANARY_STARTED, Step.STARTED]


def test_each_alert_goes_to_one_consumer_and_an_unacknowledged_one_comes_back(
    valkey_url: str,
) -> None:
    async def test(redis: Redis) -> tuple[list[str], list[str], list[str], int]:
        stream = AlertStream(redis, max_len=100)
        await stream.read_group(GROUP, "a", block_ms=1, reclaim_after_ms=60_000)  # joins
        await redis.xadd(ALERT_STREAM, {"junk": "not an alert"})
        sent = [
            (await stream.publish("warning", f"drift {i}", kind=AlertKind.DRIFT)).id
            for i in range(3)
        ]
        read_a = await stream.read_group(GROUP, "a", block_ms=1, reclaim_after_ms=60_000)
        read_b = await stream.read_group(GROUP, "b", block_ms=1, reclaim_after_ms=60_000)
        await stream.ack(GROUP, read_a[0].id)  # a handled one, then died
        await asyncio.sleep(0.05)
        reclaimed = await stream.read_group(GROUP, "b", block_ms=1, reclaim_after_ms=20)
        pending = (await redis.xpending(ALERT_STREAM, GROUP))["pending"]
        return sent, [a.id for a in read_a + read_b], [a.id for a in reclaimed], pending

    sent, first_reads, reclaimed, pending = _on_valkey(valkey_url, test)

    assert first_reads == sent  # to "a", each once; nothing left for "b"
    assert reclaimed == sent[1:]  # what "a" took and never acknowledged
    assert pending == 2  # the junk entry was acknowledged as it was read
