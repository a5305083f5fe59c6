"""Every prediction recorded by the replica that answered it, off the request's path.

The API names each row's prediction id and arm (`contracts.serve.RecordAs`); the
replica, which holds the rows and their answers already, keeps them as they are, and
a background loop encodes and writes what waits every MLOPS_PREDICTION_FLUSH_SECONDS,
one Redis round trip a batch. So recording costs the API, whose one process every
prediction crosses, nothing but the id. It never fails nor delays an answer: with Redis
down, or more predictions waiting than MLOPS_PREDICTION_BACKLOG, they are skipped and
counted, and the counts reach the API's `/metrics` with the replica's next replies
(`RecordingCounts`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from mlops.contracts.predictions import Arm, Encoded, encoded_record
from mlops.contracts.recording import PredictionSink
from mlops.contracts.serve import RecordAs, RecordingCounts, Unrecorded, as_answered

log = logging.getLogger("ray.serve")

BATCH = 2000  # predictions a round trip at most
# A failing Redis is logged once in this long, however many batches it refused.
_LOG_EVERY_S = 60.0
_ARMS = frozenset(arm.value for arm in Arm)


class NotRecordable(ValueError):
    """A group's `record` does not fit its rows: a caller's mistake, refused."""


@dataclass(frozen=True, slots=True)
class Answered:
    """A group as answered, kept as it is to be recorded: encoded at the next write,
    off the request's path."""

    record_as: RecordAs
    version: str
    classes: list[str]  # none for a regressor
    rows: list[list[float]]
    outputs: list[Any]


def answered(
    record_as: RecordAs,
    version: str,
    classes: list[str],
    rows: list[list[float]],
    outputs: list[Any],
) -> Answered:
    """The group to record, once `record_as` is checked against its rows (NotRecordable)."""
    ids, arms, model = record_as["ids"], record_as["arms"], record_as["model"]
    if not (len(ids) == len(arms) == len(rows)) or not isinstance(model, str):
        raise NotRecordable("record needs a model, and an id and an arm for each row")
    if not _ARMS.issuperset(arms):
        raise NotRecordable(f"record: an arm is one of {', '.join(sorted(_ARMS))}")
    return Answered(record_as, version, classes, rows, outputs)


def records_of(group: Answered) -> list[Encoded]:
    """The group's predictions as recorded: the class and probabilities exactly as the
    API answers them (`as_answered`, on the same numbers), or a regressor's value."""
    record_as, classes = group.record_as, group.classes
    model, version = record_as["model"], group.version
    encoded = []
    for prediction_id, arm, row, output in zip(
        record_as["ids"], record_as["arms"], group.rows, group.outputs, strict=True
    ):
        value, probabilities = as_answered(output) if classes else (output[0], None)
        encoded.append(
            encoded_record(model, prediction_id, version, arm, row, value, classes, probabilities)
        )
    return encoded


class PredictionRecorder:
    def __init__(self, *, max_waiting: int, flush_seconds: float) -> None:
        self._max_waiting = max_waiting
        self._flush_seconds = flush_seconds
        self._waiting: deque[Answered] = deque()
        self._waiting_rows = 0
        self._encoded: list[Encoded] = []  # taken from `_waiting`, not yet written
        self._recorded: Counter[str] = Counter()
        self._unrecorded: Counter[str] = Counter()
        self._last_logged = -_LOG_EVERY_S

    def keep(self, group: Answered) -> None:
        """For the next write (O(1)); with `max_waiting` rows or more waiting, skipped
        and counted."""
        if self._waiting_rows >= self._max_waiting:
            self._unrecorded[Unrecorded.BACKLOG.value] += len(group.rows)
            return
        self._waiting.append(group)
        self._waiting_rows += len(group.rows)

    def counts(self) -> RecordingCounts | None:
        """What was recorded and skipped since the last call that had news; None for none."""
        if not (self._recorded or self._unrecorded):
            return None
        counts = RecordingCounts(recorded=dict(self._recorded), unrecorded=dict(self._unrecorded))
        self._recorded.clear()
        self._unrecorded.clear()
        return counts

    async def flush_forever(self, sink: PredictionSink) -> None:
        """Every `flush_seconds`, what waits, BATCH at a time; on cancel, what is left.
        Timed rather than woken by each prediction: one round trip for a batch."""
        try:
            while True:
                await asyncio.sleep(self._flush_seconds)
                await self._write_waiting(sink)
        finally:
            await asyncio.shield(self._write_waiting(sink))

    async def _write_waiting(self, sink: PredictionSink) -> None:
        """What waits, encoded a group at a time: the replica's requests share this loop,
        and a flush's worth at once (about 2.5 µs a prediction) would hold them for
        milliseconds. Cancelled meanwhile, nothing taken is lost: the next call writes it."""
        for _ in range(len(self._waiting)):
            group = self._waiting.popleft()
            self._waiting_rows -= len(group.rows)
            self._encoded += records_of(group)
            await asyncio.sleep(0)
        records, self._encoded = self._encoded, []
        for start in range(0, len(records), BATCH):
            await self._write(sink, records[start : start + BATCH])

    async def _write(self, sink: PredictionSink, batch: list[Encoded]) -> None:
        try:
            await sink.record(batch)
        except (RedisError, OSError) as exc:
            self._unrecorded[Unrecorded.REDIS.value] += len(batch)
            now = time.monotonic()
            if now - self._last_logged >= _LOG_EVERY_S:
                self._last_logged = now
                log.warning("predictions not recorded (Redis: %s); answering anyway", exc)
            return
        self._recorded.update(record.model for record in batch)
