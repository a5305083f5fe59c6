"""Every prediction recorded, off the request's path.

A prediction is handed over without waiting (`submit`) and written in batches by a
background loop every MLOPS_PREDICTION_FLUSH_SECONDS, one Redis round trip a batch.
Recording never fails nor delays an answer: with Redis down, or more predictions
waiting than `max_waiting`, they are skipped and counted
(`mlops_predictions_unrecorded_total`, by reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import NamedTuple

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.redis.predictions import PredictionStore
from mlops.contracts.predictions import Arm, Encoded, PredictionRecord
from mlops.contracts.serve import ServeAnswer, prediction_of
from mlops.telemetry import Instruments

log = logging.getLogger(__name__)

BATCH = 2000  # predictions a round trip at most
# A failing Redis is logged once in this long, however many batches it refused.
_LOG_EVERY_S = 60.0


class Answered(NamedTuple):
    """A prediction as answered, as the API hands it over: `output` and `probabilities`
    as `prediction_of` the answer gave them (computed once, for the reply and this)."""

    prediction_id: str
    model: str
    row: list[float]
    body: ServeAnswer
    arm: Arm
    output: int | float
    probabilities: list[float] | None


def answered(
    prediction_id: str, model: str, row: list[float], body: ServeAnswer, arm: Arm
) -> Answered:
    return Answered(prediction_id, model, row, body, arm, *prediction_of(body))


def record_of(answered: Answered) -> PredictionRecord:
    return PredictionRecord(
        prediction_id=answered.prediction_id,
        model=answered.model,
        version=answered.body["version"],
        arm=answered.arm,
        features=answered.row,
        output=answered.output,
        classes=answered.body["classes"],
        probabilities=answered.probabilities,
    )


class PredictionLog:
    def __init__(
        self,
        store: PredictionStore,
        *,
        instruments: Instruments,
        max_waiting: int,
        flush_seconds: float,
    ) -> None:
        self._store = store
        self._instruments = instruments
        self._max_waiting = max_waiting
        self._flush_seconds = flush_seconds
        self._waiting: list[Encoded] = []
        self._last_logged = -_LOG_EVERY_S

    def submit(self, answered: Answered) -> None:
        """Keep it, encoded, for the next write: no wake-up of anything, and one string
        held (which the garbage collector does not track) instead of the answer."""
        if len(self._waiting) >= self._max_waiting:
            self._instruments.unrecorded.labels("backlog").inc()
            return
        self._waiting.append(record_of(answered).encoded())

    async def run(self, background: Background) -> None:
        """Every `flush_seconds`, write what waits, BATCH at a time; at the end, what is
        left. Timed rather than woken by each prediction: a write costs the API a
        Redis call's CPU, once for a batch instead of once a prediction."""
        try:
            while background.running:
                await background.pause(self._flush_seconds)
                while self._waiting:
                    await self._write(self._take())
                background.completed_round()
        finally:
            if self._waiting:
                await asyncio.shield(self._write(self._take()))

    def _take(self) -> list[Encoded]:
        batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
        return batch

    async def _write(self, batch: list[Encoded]) -> None:
        try:
            await self._store.record(batch)
        except (RedisError, OSError) as exc:
            self._instruments.unrecorded.labels("redis").inc(len(batch))
            now = time.monotonic()
            if now - self._last_logged >= _LOG_EVERY_S:
                self._last_logged = now
                log.warning("predictions not recorded (Redis: %s); answering anyway", exc)
            return
        for model, count in Counter(record.model for record in batch).items():
            self._instruments.recorded.labels(model).inc(count)
