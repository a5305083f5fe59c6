"""Recorded predictions and their labels: a stream of predictions per model (capped by
count and age), one index by prediction id (trimmed with the streams, so bounded as
they are), and a stream of labelled predictions per model that live metrics read."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from mlops.clients.redis.keys import PREDICTION_INDEX, label_stream_key, prediction_stream_key
from mlops.clients.redis.labels import LabelReader
from mlops.clients.redis.scripts import JOIN_LABELS, RECORD_PREDICTIONS
from mlops.contracts.predictions import (
    HOUR_MS,
    Encoded,
    LabelledPrediction,
    PredictionRecord,
)

RECORD_FIELD = "record"  # a prediction's stream entry: this one field, its JSON
# Live metrics look back a week at most: older labels are trimmed.
LABEL_MAX_AGE_MS = 7 * 24 * HOUR_MS


class Joined(StrEnum):
    ACCEPTED = "accepted"
    REPLACED = "replaced"  # a label sent before for the same prediction no longer counts
    EXPIRED = "expired"  # the prediction left the store (its age or count limit)


@dataclass(frozen=True)
class Label:
    """A true outcome for a recorded prediction, checked against it by the caller."""

    prediction: PredictionRecord
    label: int | float


def _now_ms() -> int:
    return int(time.time() * 1000)


class PredictionWriter:
    """Writes recorded predictions: what a Serve replica needs of the store."""

    def __init__(self, redis: Redis, *, max_predictions: int, max_age_hours: float) -> None:
        self._max_predictions = max_predictions
        self._max_age_ms = int(max_age_hours * HOUR_MS)
        self._record = redis.register_script(RECORD_PREDICTIONS)

    async def record(self, predictions: Sequence[Encoded]) -> None:
        """One round trip for the lot."""
        if not predictions:
            return
        streams = list(dict.fromkeys(prediction_stream_key(p.model) for p in predictions))
        position = {stream: n for n, stream in enumerate(streams, start=2)}  # Lua's KEYS
        # A line a prediction: its stream's place in KEYS, its id, its record (JSON has
        # no tab nor newline of its own); one argument, split by the script.
        lines = "\n".join(
            f"{position[prediction_stream_key(p.model)]}\t{p.prediction_id}\t{p.record}"
            for p in predictions
        )
        args = [self._max_predictions, _now_ms() - self._max_age_ms, lines]
        await self._record(keys=[PREDICTION_INDEX, *streams], args=args)


class PredictionStore:
    def __init__(
        self, redis: Redis, *, max_predictions: int, max_age_hours: float, max_labels: int
    ) -> None:
        self._redis = redis
        self._max_labels = max_labels
        self._writer = PredictionWriter(
            redis, max_predictions=max_predictions, max_age_hours=max_age_hours
        )
        self._join = redis.register_script(JOIN_LABELS)
        self._labelled = LabelReader(redis, max_labels=max_labels, max_age_ms=LABEL_MAX_AGE_MS)

    async def record(self, predictions: Sequence[Encoded]) -> None:
        """One round trip for the lot (as a replica records them)."""
        await self._writer.record(predictions)

    async def recent(self, model: str, limit: int) -> list[PredictionRecord]:
        """The newest first."""
        entries = await self._redis.xrevrange(prediction_stream_key(model), count=limit)
        return [PredictionRecord.from_json(model, fields[RECORD_FIELD]) for _, fields in entries]

    async def find(self, prediction_ids: Sequence[str]) -> dict[str, PredictionRecord | None]:
        """The predictions indexed, by id: their record, or None when the stream no longer
        holds it (trimmed by its count or age limit). Two round trips for the lot."""
        if not prediction_ids:
            return {}
        located = await self._redis.hmget(PREDICTION_INDEX, list(prediction_ids))
        found = [
            (prediction_id, *value.split(" ")[:2])
            for prediction_id, value in zip(prediction_ids, located, strict=True)
            if value
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, stream, entry in found:
                pipe.xrange(stream, entry, entry)
            entries = await pipe.execute()
        return {
            prediction_id: PredictionRecord.from_json(
                stream.removeprefix(prediction_stream_key("")), entry[0][1][RECORD_FIELD]
            )
            if entry
            else None
            for (prediction_id, stream, _), entry in zip(found, entries, strict=True)
        }

    async def join(self, model: str, labels: Sequence[Label]) -> list[Joined]:
        """Labels for predictions of `model`, in one atomic step: a prediction labelled
        twice counts once, with the last label."""
        if not labels:
            return []
        keys = [label_stream_key(model), PREDICTION_INDEX]
        args: list[str | int] = [self._max_labels, _now_ms() - LABEL_MAX_AGE_MS]
        for item in labels:
            p = item.prediction
            joined = LabelledPrediction(
                p.prediction_id, p.version, p.arm, p.output, item.label, labelled_at_ms=0
            )
            flat = [value for pair in joined.fields().items() for value in pair]
            args += [p.prediction_id, json.dumps(flat)]
        outcomes = await self._join(keys=keys, args=args)
        as_joined = {0: Joined.EXPIRED, 1: Joined.ACCEPTED, 2: Joined.REPLACED}
        return [as_joined[int(outcome)] for outcome in outcomes]

    async def labelled_since(self, model: str, since_ms: int) -> list[LabelledPrediction]:
        """The model's labelled predictions that arrived since `since_ms`, oldest first."""
        return await self._labelled.since(model, since_ms)

    async def labelled_last(self, model: str, count: int) -> list[LabelledPrediction]:
        """The model's newest `count` labelled predictions, oldest first."""
        return await self._labelled.last(model, count)
