"""Every prediction recorded, off the request's path.

A prediction is handed over without waiting (`submit`) and written in batches by a
background loop, one Redis round trip a batch. Recording never fails nor delays an
answer: with Redis down, or more predictions waiting than `max_waiting`, they are
skipped and counted (`mlops_predictions_unrecorded_total`, by reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.redis.predictions import PredictionStore
from mlops.contracts.predictions import PredictionRecord
from mlops.telemetry import Instruments

log = logging.getLogger(__name__)

BATCH = 500  # predictions a round trip at most
# A failing Redis is logged once in this long, however many batches it refused.
_LOG_EVERY_S = 60.0


class PredictionLog:
    def __init__(
        self, store: PredictionStore, *, instruments: Instruments, max_waiting: int
    ) -> None:
        self._store = store
        self._instruments = instruments
        self._waiting: asyncio.Queue[PredictionRecord] = asyncio.Queue(max_waiting)
        self._last_logged = -_LOG_EVERY_S

    def submit(self, record: PredictionRecord) -> None:
        try:
            self._waiting.put_nowait(record)
        except asyncio.QueueFull:
            self._instruments.unrecorded.labels("backlog").inc()

    async def run(self, background: Background) -> None:
        """Write what waits, a batch at a time, until the app stops; then what is left."""
        try:
            while background.running:
                batch = [await self._waiting.get()]
                await self._write(self._drain(batch))
                background.completed_round()
        finally:
            if not self._waiting.empty():
                await asyncio.shield(self._write(self._drain([])))

    def _drain(self, batch: list[PredictionRecord]) -> list[PredictionRecord]:
        while len(batch) < BATCH and not self._waiting.empty():
            batch.append(self._waiting.get_nowait())
        return batch

    async def _write(self, batch: list[PredictionRecord]) -> None:
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
