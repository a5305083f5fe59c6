"""Labels read incrementally, in a real Valkey: what a reader that has read before
returns is what a fresh read of the stream returns, and a read after the first one
fetches only the entries added since."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from mlops.clients.redis.keys import label_stream_key
from mlops.clients.redis.labels import READ_CHUNK
from mlops.clients.redis.predictions import Label, PredictionStore
from mlops.contracts.predictions import Arm, PredictionRecord, new_prediction_id

IRIS = ["Setosa", "Versicolor", "Virginica"]


def _records(count: int) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            prediction_id=new_prediction_id(),
            model="iris",
            version="1",
            arm=Arm.CHAMPION,
            features=[5.1, 3.5, 1.4, 0.2],
            output=n % 3,
            classes=IRIS,
            probabilities=[1.0, 0.0, 0.0],
        )
        for n in range(count)
    ]


@asynccontextmanager
async def _redis(valkey_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(valkey_url, decode_responses=True)
    await redis.flushdb()
    try:
        yield redis
    finally:
        await redis.aclose()


def _store(redis: Redis, max_labels: int = 100_000) -> PredictionStore:
    return PredictionStore(redis, max_predictions=100_000, max_age_hours=24, max_labels=max_labels)


async def _record(store: PredictionStore, records: list[PredictionRecord]) -> None:
    for start in range(0, len(records), 1000):  # as the prediction log's batches
        await store.record([record.encoded() for record in records[start : start + 1000]])


async def _label(store: PredictionStore, records: list[PredictionRecord], label: int) -> None:
    for start in range(0, len(records), 1000):  # as /feedback's batches
        part = records[start : start + 1000]
        await store.join("iris", [Label(record, label) for record in part])


async def _bytes_sent(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_net_output_bytes"])


def test_a_reader_that_read_before_returns_what_a_fresh_read_returns(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _redis(valkey_url) as redis:
            reader = _store(redis)
            records = _records(2 * READ_CHUNK + 500)  # read in three chunks
            await _record(reader, records)
            await _label(reader, records[:2000], label=0)
            first = await reader.labelled_since("iris", 0)

            # New labels, and labels sent again for predictions already read: the
            # stream deletes the entries they replace, the reader drops what it read.
            await _label(reader, records[2000:], label=1)
            await _label(reader, records[:10], label=2)
            again = await reader.labelled_since("iris", 0)
            fresh = await _store(redis).labelled_since("iris", 0)

            assert len(first) == 2000
            assert again == fresh
            assert len(again) == len(records)  # each prediction once
            by_id = {item.prediction_id: item.label for item in again}
            assert [by_id[r.prediction_id] for r in records[:11]] == [2] * 10 + [0]
            assert [item.prediction_id for item in again[-10:]] == [
                r.prediction_id for r in records[:10]
            ]  # in the order they arrived, the replacing labels last
            assert await reader.labelled_last("iris", 3) == fresh[-3:]

    asyncio.run(scenario())


def test_after_the_first_read_only_the_new_entries_are_fetched(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _redis(valkey_url) as redis:
            reader = _store(redis)
            records = _records(20_000)
            await _record(reader, records)
            await _label(reader, records[:19_990], label=0)

            before = await _bytes_sent(redis)
            await reader.labelled_since("iris", 0)
            first_read = await _bytes_sent(redis) - before
            await _label(reader, records[19_990:], label=1)
            before = await _bytes_sent(redis)
            labelled = await reader.labelled_since("iris", 0)
            second_read = await _bytes_sent(redis) - before

            assert len(labelled) == 20_000
            assert first_read > 1_000_000
            assert second_read < 20_000, (first_read, second_read)

    asyncio.run(scenario())


def test_a_stream_found_emptied_is_read_again_from_its_start(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _redis(valkey_url) as redis:
            reader = _store(redis)
            records = _records(20)
            await _record(reader, records)
            await _label(reader, records[:10], label=0)
            assert len(await reader.labelled_since("iris", 0)) == 10

            await redis.delete(label_stream_key("iris"))  # as an operator's FLUSHDB would
            assert await reader.labelled_since("iris", 0) == []
            await _label(reader, records[10:], label=1)
            labelled = await reader.labelled_since("iris", 0)

            assert [item.prediction_id for item in labelled] == [
                r.prediction_id for r in records[10:]
            ]

    asyncio.run(scenario())


def test_the_reader_keeps_no_more_labels_than_the_history(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _redis(valkey_url) as redis:
            reader = _store(redis, max_labels=100)
            records = _records(350)
            await _record(reader, records)
            await _label(reader, records, label=0)

            kept = await reader.labelled_since("iris", 0)

            assert [item.prediction_id for item in kept] == [
                r.prediction_id for r in records[-100:]
            ]

    asyncio.run(scenario())
