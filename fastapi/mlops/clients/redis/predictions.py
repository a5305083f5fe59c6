"""Recorded predictions and their labels: a stream of predictions per model (capped by
count and age), one index by prediction id (trimmed with the streams, so bounded as
they are), and a stream of labelled predictions per model that live metrics read."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import orjson
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

# A stream entry holds this many of a model's predictions at most, written together:
# Valkey's work a prediction falls by a third to a half (one entry, not one each; the
# index by id is most of what is left), while a label's lookup still reads one entry
# (some 20 kB).
PER_ENTRY = 100
_FIRST_PAGE = 16  # entries read first, newest first, for the most recent predictions
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


def _records(model: str, fields: dict[str, str]) -> list[PredictionRecord]:
    """A stream entry's predictions, in the order they were written: `records`, or
    `record` for an entry written before entries held many."""
    if "records" in fields:
        return [PredictionRecord.from_object(model, o) for o in orjson.loads(fields["records"])]
    return [PredictionRecord.from_json(model, fields["record"])]


class PredictionWriter:
    """Writes recorded predictions: what a Serve replica needs of the store."""

    def __init__(self, redis: Redis, *, max_predictions: int, max_age_hours: float) -> None:
        self._max_predictions = max_predictions
        self._max_age_ms = int(max_age_hours * HOUR_MS)
        # A stream's count limit is kept to whole entries: none holds more than it.
        self._per_entry = min(PER_ENTRY, max_predictions)
        self._record = redis.register_script(RECORD_PREDICTIONS)

    async def record(self, predictions: Sequence[Encoded]) -> None:
        """One round trip for the lot, a stream entry for PER_ENTRY of a model's."""
        if not predictions:
            return
        by_stream: dict[str, list[Encoded]] = {}
        for p in predictions:
            by_stream.setdefault(prediction_stream_key(p.model), []).append(p)
        # A line an entry: its stream's place in KEYS (Lua's, from 2), its ids, its
        # records as a JSON list (JSON has no tab nor newline of its own); one argument,
        # split by the script.
        lines = []
        for position, mine in enumerate(by_stream.values(), start=2):
            for start in range(0, len(mine), self._per_entry):
                entry = mine[start : start + self._per_entry]
                ids = " ".join(p.prediction_id for p in entry)
                lines.append(f"{position}\t{ids}\t[{','.join(p.record for p in entry)}]")
        oldest_kept = _now_ms() - self._max_age_ms
        args = [self._max_predictions, oldest_kept, "\n".join(lines), self._per_entry]
        await self._record(keys=[PREDICTION_INDEX, *by_stream], args=args)


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
        stream, end, count, read = prediction_stream_key(model), "+", _FIRST_PAGE, 0
        newest_first: list[PredictionRecord] = []
        while len(newest_first) < limit:
            entries = await self._redis.xrevrange(stream, max=end, count=count)
            read += len(entries)
            for _, fields in entries:
                newest_first += reversed(_records(model, fields))
            if len(entries) < count:
                break
            end = f"({entries[-1][0]}"
            # As many entries as those read so suggest, and a few more (a quiet model's
            # hold one or two predictions, a busy one's a hundred); never more than
            # the predictions still wanted, as each entry holds one at least.
            wanted = limit - len(newest_first)
            count = min(wanted, wanted * read // len(newest_first) + _FIRST_PAGE)
        return newest_first[:limit]

    async def find(self, prediction_ids: Sequence[str]) -> dict[str, PredictionRecord | None]:
        """The predictions indexed, by id: their record, or None when the stream no longer
        holds it (trimmed by its count or age limit). Two round trips for the lot, an
        entry read once however many of its predictions are asked for."""
        if not prediction_ids:
            return {}
        located = await self._redis.hmget(PREDICTION_INDEX, list(prediction_ids))
        # "stream entry#position [label entry]", or "stream entry" for an entry of one.
        found = {}
        for prediction_id, value in zip(prediction_ids, located, strict=True):
            if value:
                stream, place = value.split(" ")[:2]
                entry, _, position = place.partition("#")
                found[prediction_id] = (stream, entry, int(position or 0))
        entries = list(dict.fromkeys((stream, entry) for stream, entry, _ in found.values()))
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, entry in entries:
                pipe.xrange(stream, entry, entry)
            read = await pipe.execute()
        records = {
            (stream, entry): _records(stream.removeprefix(prediction_stream_key("")), got[0][1])
            for (stream, entry), got in zip(entries, read, strict=True)
            if got
        }
        return {
            prediction_id: records[(stream, entry)][position]
            if (stream, entry) in records
            else None
            for prediction_id, (stream, entry, position) in found.items()
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
