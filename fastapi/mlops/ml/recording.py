"""Every prediction recorded by the replica that answered it, off the request's path.

The API names each row's prediction id and arm (`contracts.serve.RecordAs`); the
replica, which holds the row and its answer already, keeps the record encoded and a
background loop writes what waits every MLOPS_PREDICTION_FLUSH_SECONDS, one Redis round
trip a batch. So recording costs the API, whose one process every prediction crosses,
nothing but the id. It never fails nor delays an answer: with Redis down, or more
predictions waiting than MLOPS_PREDICTION_BACKLOG, they are skipped and counted, and the
counts reach the API's `/metrics` with the replica's next replies (`RecordingCounts`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from mlops.contracts.predictions import Arm, Encoded, PredictionRecord
from mlops.contracts.recording import PredictionSink
from mlops.contracts.serve import RecordAs, RecordingCounts, Unrecorded, as_answered

log = logging.getLogger("ray.serve")

BATCH = 2000  # predictions a round trip at most
# A failing Redis is logged once in this long, however many batches it refused.
_LOG_EVERY_S = 60.0


class NotRecordable(ValueError):
    """A group's `record` does not fit its rows: a caller's mistake, refused."""


def records_of(
    record_as: RecordAs,
    version: str,
    classes: list[str],
    rows: list[list[float]],
    outputs: list[Any],
) -> list[Encoded]:
    """The group's predictions as recorded: the class and probabilities exactly as the
    API answers them (`as_answered`, on the same numbers), or a regressor's value."""
    ids, arms, model = record_as["ids"], record_as["arms"], record_as["model"]
    if not (len(ids) == len(arms) == len(rows)) or not isinstance(model, str):
        raise NotRecordable("record needs a model, and an id and an arm for each row")
    try:
        known = [Arm(arm) for arm in arms]
    except ValueError as exc:
        raise NotRecordable(f"record: {exc}") from None
    encoded = []
    for prediction_id, arm, row, output in zip(ids, known, rows, outputs, strict=True):
        value, probabilities = as_answered(output) if classes else (output[0], None)
        record = PredictionRecord(
            prediction_id=prediction_id,
            model=model,
            version=version,
            arm=arm,
            features=row,
            output=value,
            classes=classes,
            probabilities=probabilities,
        )
        encoded.append(record.encoded())
    return encoded


class PredictionRecorder:
    def __init__(self, *, max_waiting: int, flush_seconds: float) -> None:
        self._max_waiting = max_waiting
        self._flush_seconds = flush_seconds
        self._waiting: list[Encoded] = []
        self._recorded: Counter[str] = Counter()
        self._unrecorded: Counter[str] = Counter()
        self._last_logged = -_LOG_EVERY_S

    def keep(self, records: Sequence[Encoded]) -> None:
        """For the next write; beyond the backlog's bound, skipped and counted."""
        room = max(0, self._max_waiting - len(self._waiting))
        self._waiting.extend(records[:room])
        if len(records) > room:
            self._unrecorded[Unrecorded.BACKLOG.value] += len(records) - room

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
                while self._waiting:
                    await self._write(sink, self._take())
        finally:
            if self._waiting:
                await asyncio.shield(self._write(sink, self._take()))

    def _take(self) -> list[Encoded]:
        batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
        return batch

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
