"""Recorded predictions and their labels, in a real Valkey: the store, a replica's
recording loop and the feedback service, without Ray or MLflow (their part is in
test_feedback_loop.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from helpers import free_port, run_async
from redis.asyncio import Redis
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from mlops.clients.redis.keys import PREDICTION_INDEX, prediction_stream_key
from mlops.clients.redis.predictions import PredictionStore, PredictionWriter
from mlops.contracts.model_definition import (
    Gate,
    Metric,
    ModelDefinition,
    ModelSpec,
    Task,
)
from mlops.contracts.predictions import (
    Arm,
    Encoded,
    PredictionRecord,
    new_prediction_id,
    shadow_id,
)
from mlops.contracts.serve import RecordAs
from mlops.ml.recording import Answered, PredictionRecorder, answered, records_of
from mlops.services.feedback import Feedback, Outcome

IRIS = ["Setosa", "Versicolor", "Virginica"]
HOUR_MS = 3_600_000


def _definition(name: str, task: Task) -> ModelDefinition:
    metric = Metric.ACCURACY if task is Task.CLASSIFICATION else Metric.RMSE
    spec = ModelSpec(
        dataset_uri="/data/x.csv", target_column="y", task=task, gate=Gate(metric=metric)
    )
    now = datetime.now(UTC)
    return ModelDefinition(
        name=name,
        registered_model=name,
        experiment=name,
        spec=spec,
        created_at=now,
        updated_at=now,
    )


def _classified(output: int, version: str = "1", *, at_ms: int | None = None) -> PredictionRecord:
    probabilities = [0.0, 0.0, 0.0]
    probabilities[output] = 1.0
    return PredictionRecord(
        prediction_id=new_prediction_id(at_ms),
        model="iris",
        version=version,
        arm=Arm.CHAMPION,
        features=[5.1, 3.5, 1.4, 0.2],
        output=output,
        classes=IRIS,
        probabilities=probabilities,
    )


def _regressed(value: float, version: str = "1") -> PredictionRecord:
    return PredictionRecord(
        prediction_id=new_prediction_id(),
        model="diabetes",
        version=version,
        arm=Arm.CHAMPION,
        features=[0.1, 0.2],
        output=value,
        classes=[],
    )


def _answered(outputs: list[int]) -> Answered:
    """A group as a replica answered it: one-hot probabilities, one a row."""
    rows = [[5.1, 3.5, 1.4, 0.2]] * len(outputs)
    answers = [[1.0 if i == output else 0.0 for i in range(3)] for output in outputs]
    ids = [new_prediction_id() for _ in outputs]
    record_as = RecordAs(model="iris", ids=ids, arms=[Arm.CHAMPION.value] * len(ids))
    return answered(record_as, "1", IRIS, rows, answers)


async def _put(store: PredictionStore, records: list[PredictionRecord]) -> None:
    await store.record([record.encoded() for record in records])


async def _indexed(store: PredictionStore) -> list[str]:
    """The prediction ids the index holds (not the streams' counts, under "#")."""
    fields = await store._redis.hkeys(PREDICTION_INDEX)
    return [field for field in fields if not field.startswith("#")]


@asynccontextmanager
async def _store(valkey_url: str, **limits: int) -> AsyncIterator[PredictionStore]:
    redis = Redis.from_url(valkey_url, decode_responses=True)
    await redis.flushdb()
    values = {"max_predictions": 1000, "max_labels": 1000, **limits}
    try:
        yield PredictionStore(redis, max_age_hours=24, **values)
    finally:
        await redis.aclose()


def test_a_label_scores_the_shadow_s_answer_to_the_same_row_too(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as store:
            champion = [_classified(0), _classified(1)]
            # The challenger answered the first row alike, the second differently.
            twins = [
                dataclasses.replace(
                    record,
                    prediction_id=shadow_id(record.prediction_id),
                    version="2",
                    arm=Arm.SHADOW,
                    output=0,
                )
                for record in champion
            ]
            await _put(store, champion + twins)
            feedback = Feedback(store, max_age_hours=24)

            sent = await feedback.send([(r.prediction_id, IRIS[int(r.output)]) for r in champion])
            live = await feedback.live(
                _definition("iris", Task.CLASSIFICATION), window=None, last=100
            )

            assert [(r.outcome, r.version) for r in sent] == [(Outcome.ACCEPTED, "1")] * 2
            by_version = {v.version: v for v in live}
            assert by_version["1"].labels == 2
            assert by_version["1"].metrics[Metric.ACCURACY].value == pytest.approx(1.0)
            assert by_version["2"].labels == 2  # scored, not reported apart
            assert by_version["2"].metrics[Metric.ACCURACY].value == pytest.approx(0.5)

    asyncio.run(scenario())


def test_labels_are_joined_to_their_predictions_and_the_last_one_counts(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as store:
            records = [_classified(i % 3) for i in range(6)]
            await _put(store, records)
            feedback = Feedback(store, max_age_hours=24)

            first = await feedback.send([(r.prediction_id, IRIS[int(r.output)]) for r in records])
            # The first prediction's label again, now wrong, by index: it replaces the first.
            again = await feedback.send([(records[0].prediction_id, 2)])
            live = await feedback.live(
                _definition("iris", Task.CLASSIFICATION), window=None, last=100
            )

            assert [r.outcome for r in first] == [Outcome.ACCEPTED] * 6
            assert {(r.model, r.version) for r in first} == {("iris", "1")}
            assert [r.outcome for r in again] == [Outcome.REPLACED]
            (version,) = live
            assert version.labels == 6  # counted once
            assert version.metrics[Metric.ACCURACY].value == pytest.approx(5 / 6)

    run_async(scenario())


def test_a_label_that_is_not_the_model_s_is_refused_saying_which_are(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as store:
            classified, regressed = _classified(0), _regressed(150.0)
            await _put(store, [classified, regressed])
            feedback = Feedback(store, max_age_hours=24)

            results = await feedback.send(
                [
                    (classified.prediction_id, "Rose"),
                    (classified.prediction_id, 3),
                    (classified.prediction_id, 1.0),
                    (regressed.prediction_id, "high"),
                    (regressed.prediction_id, 151.5),
                ]
            )

            assert [r.outcome for r in results] == [Outcome.WRONG_LABEL] * 4 + [Outcome.ACCEPTED]
            assert "Setosa, Versicolor, Virginica" in (results[0].detail or "")
            assert "index 0..2" in (results[1].detail or "")
            assert "regression" in (results[3].detail or "")

    run_async(scenario())


def test_unknown_and_expired_predictions_are_told_apart(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url, max_predictions=100) as store:
            feedback = Feedback(store, max_age_hours=24)
            never = new_prediction_id()
            too_old = new_prediction_id(int(time.time() * 1000) - 25 * HOUR_MS)
            # Recorded, then pushed out of the stream by 500 newer ones (its count limit).
            pushed_out = _classified(1)
            await _put(store, [pushed_out])
            for _ in range(5):
                await _put(store, [_classified(0) for _ in range(100)])

            results = await feedback.send([(never, 0), (too_old, 0), (pushed_out.prediction_id, 1)])

            assert [r.outcome for r in results] == [
                Outcome.UNKNOWN,
                Outcome.EXPIRED,
                Outcome.UNKNOWN,
            ]
            assert "pushed out" in (results[2].detail or "")
            # The index holds no more than the stream: the pushed-out ids left it.
            assert len(await _indexed(store)) <= 100

    run_async(scenario())


def test_a_write_that_pushes_out_thousands_leaves_the_index_as_small_as_the_stream(
    valkey_url: str,
) -> None:
    async def scenario() -> None:
        async with _store(valkey_url, max_predictions=100) as store:
            first = [_classified(0) for _ in range(100)]
            await _put(store, first)
            # One write of 2,500 pushes out 2,500: forgotten by the index in one call.
            await _put(store, [_classified(1) for _ in range(2500)])

            assert len(await _indexed(store)) == 100
            found = await store.find([first[0].prediction_id, first[-1].prediction_id])
            assert found == {}

    run_async(scenario())


def test_live_metrics_are_scikit_learn_s_with_intervals_around_them(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as store:
            truth = [i % 3 for i in range(300)]
            outputs = [t if i % 7 else (t + 1) % 3 for i, t in enumerate(truth)]
            records = [_classified(o, version="4") for o in outputs]
            values = [float(i) for i in range(200)]
            guesses = [v + (3 if i % 2 else -1) for i, v in enumerate(values)]
            regressions = [_regressed(g, version="2") for g in guesses]
            await _put(store, records + regressions)
            feedback = Feedback(store, max_age_hours=24)
            await feedback.send([(r.prediction_id, t) for r, t in zip(records, truth, strict=True)])
            await feedback.send(
                [(r.prediction_id, v) for r, v in zip(regressions, values, strict=True)]
            )

            (classified,) = await feedback.live(
                _definition("iris", Task.CLASSIFICATION), window=None, last=None
            )
            (regressed,) = await feedback.live(
                _definition("diabetes", Task.REGRESSION), window=None, last=None
            )

            accuracy = classified.metrics[Metric.ACCURACY]
            f1 = classified.metrics[Metric.F1_MACRO]
            assert accuracy.value == pytest.approx(accuracy_score(truth, outputs))
            assert f1.value == pytest.approx(f1_score(truth, outputs, average="macro"))
            for estimate in (accuracy, f1):
                assert estimate.low < estimate.value < estimate.high
            mae = regressed.metrics[Metric.MAE]
            assert mae.value == pytest.approx(mean_absolute_error(values, guesses))
            assert regressed.metrics[Metric.RMSE].value == pytest.approx(math.sqrt(5))
            assert mae.low < mae.value < mae.high

    run_async(scenario())


def test_predictions_are_recorded_in_batches_and_listed_newest_first(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as store:
            recorder = PredictionRecorder(max_waiting=1000, flush_seconds=0.05)
            flushing = asyncio.create_task(recorder.flush_forever(store))
            groups = [_answered([i % 3 for i in range(50)]), _answered([1] * 50)]
            groups.append(_answered([2] * 150))
            for group in groups:
                recorder.keep(group)
            deadline = time.monotonic() + 10
            while len(await store.recent("iris", 1000)) < 250 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            flushing.cancel()
            await asyncio.gather(flushing, return_exceptions=True)

            listed = await store.recent("iris", 1000)
            kept = [record for group in groups for record in records_of(group)]
            assert [r.prediction_id for r in listed] == [r.prediction_id for r in kept[::-1]]
            first = listed[-1]
            assert (first.version, first.arm, first.output, first.classes) == (
                "1",
                Arm.CHAMPION,
                0,
                IRIS,
            )
            assert first.probabilities == [1.0, 0.0, 0.0]
            assert first.features == [5.1, 3.5, 1.4, 0.2]
            assert recorder.counts() == {"recorded": {"iris": 250}, "unrecorded": {}}
            assert recorder.counts() is None  # each count is told once

    run_async(scenario())


def test_with_redis_down_predictions_are_counted_unrecorded_and_nothing_raises() -> None:
    async def scenario() -> None:
        # A port nothing listens on: every write is refused.
        redis = Redis(port=free_port(), socket_connect_timeout=0.2, decode_responses=True)
        writer = PredictionWriter(redis, max_predictions=100, max_age_hours=1)
        recorder = PredictionRecorder(max_waiting=100, flush_seconds=0.05)
        flushing = asyncio.create_task(recorder.flush_forever(writer))
        for start in (0, 50, 100):  # the last 50 beyond the backlog
            recorder.keep(_answered([i % 3 for i in range(start, start + 50)]))
        told: Counter[str] = Counter()
        deadline = time.monotonic() + 10
        while told["redis"] < 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if (counts := recorder.counts()) is not None:
                told.update(counts["unrecorded"])
        still_flushing = not flushing.done()  # nothing raised out of the loop
        flushing.cancel()
        await asyncio.gather(flushing, return_exceptions=True)
        await redis.aclose()

        assert told == {"backlog": 50, "redis": 100}
        assert still_flushing

    run_async(scenario())


def test_an_id_from_the_future_is_unknown_at_once(valkey_url: str) -> None:
    # Its time is not now nor past: no prediction can be waited for (a fuzzer's id hung
    # a request when the wait had no bound).
    async def scenario() -> None:
        async with _store(valkey_url) as store:
            feedback = Feedback(store, max_age_hours=24)
            started = time.monotonic()
            (result,) = await feedback.send([("fffffffffff0000000000000000", 0)])

            assert result.outcome is Outcome.UNKNOWN
            assert time.monotonic() - started < 1.5  # under the 2 s grace a fresh id gets

    run_async(scenario())


def test_a_hundred_predictions_share_an_entry_and_each_is_found_and_listed_as_written(
    valkey_url: str,
) -> None:
    async def scenario() -> None:
        async with _store(valkey_url, max_predictions=10_000) as store:
            records = [_classified(i % 3) for i in range(250)]
            for i, record in enumerate(records):
                record.features = [float(i), 0.0, 0.0, 0.0]
            await _put(store, records[:200])  # two entries of a hundred
            for start in range(200, 250, 2):  # then 25 entries of two: listing pages
                await _put(store, records[start : start + 2])

            found = await store.find([r.prediction_id for r in records[::-1]])
            listed = await store.recent("iris", 240)

            stream = prediction_stream_key("iris")
            assert await store._redis.xlen(stream) == 27
            assert found == {r.prediction_id: r for r in records}
            assert listed == records[:9:-1]

    run_async(scenario())


def test_predictions_recorded_one_an_entry_before_an_upgrade_stay_readable_and_counted(
    valkey_url: str,
) -> None:
    async def scenario() -> None:
        async with _store(valkey_url, max_predictions=100) as store:
            stream = prediction_stream_key("iris")
            before = [_classified(i % 3) for i in range(30)]
            for record in before:  # as a replica wrote them before entries held many
                entry = await store._redis.xadd(
                    stream, {"id": record.prediction_id, "record": record.to_json()}
                )
                await store._redis.hset(PREDICTION_INDEX, record.prediction_id, f"{stream} {entry}")
            after = [_classified(1) for _ in range(80)]
            await _put(store, after)
            feedback = Feedback(store, max_age_hours=24)

            listed = await store.recent("iris", 200)
            sent = await feedback.send([(r.prediction_id, 0) for r in before[-2:]])

            # The 30 old ones counted one each: the 10 oldest made room for the 80.
            assert listed == after[::-1] + before[:9:-1]
            assert len(await _indexed(store)) == 100
            assert await store.find([r.prediction_id for r in before[:10]]) == {}
            assert [r.outcome for r in sent] == [Outcome.ACCEPTED] * 2
            live = await feedback.live(
                _definition("iris", Task.CLASSIFICATION), window=None, last=None
            )
            assert live[0].labels == 2

    run_async(scenario())


def test_encoding_a_flush_leaves_the_replica_s_loop_to_its_requests_between_groups(
    valkey_url: str,
) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as store:
            turns = 0
            seen_at_write: list[int] = []

            async def requests() -> None:  # stands for the replica's requests
                nonlocal turns
                while True:
                    turns += 1
                    await asyncio.sleep(0)

            class Counted:  # the real store, noting how often the requests ran
                async def record(self, batch: Sequence[Encoded]) -> None:
                    seen_at_write.append(turns)
                    await store.record(batch)

            recorder = PredictionRecorder(max_waiting=10_000, flush_seconds=3600)
            for _ in range(20):
                recorder.keep(_answered([0] * 30))
            running = asyncio.create_task(requests())
            flushing = asyncio.create_task(recorder.flush_forever(Counted()))
            await asyncio.sleep(0.01)
            before = turns
            flushing.cancel()  # what waits is written on the way out
            await asyncio.gather(flushing, return_exceptions=True)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

            # The requests ran between the 20 groups' encodings, not only after them.
            assert seen_at_write[0] - before >= 20
            assert len(await store.recent("iris", 1000)) == 600

    run_async(scenario())


def test_a_flush_cancelled_while_it_encodes_loses_none_of_what_it_took(valkey_url: str) -> None:
    async def scenario() -> None:
        async with _store(valkey_url) as store:
            recorder = PredictionRecorder(max_waiting=10_000, flush_seconds=0)
            for _ in range(20):
                recorder.keep(_answered([0] * 30))
            flushing = asyncio.create_task(recorder.flush_forever(store))
            for _ in range(6):  # a few groups into the first flush's encoding
                await asyncio.sleep(0)
            flushing.cancel()  # as a replica shutting down does
            await asyncio.gather(flushing, return_exceptions=True)

            assert len(await store.recent("iris", 1000)) == 600
            assert recorder.counts() == {"recorded": {"iris": 600}, "unrecorded": {}}

    run_async(scenario())
