"""Which side of a model's rollout answers a request, as every API process decides it.

Each process reads a model's rollout from Redis at most once per `refresh_seconds`, in
the background: a prediction never waits on Redis, it routes by the rollout last read
(none before the first read). A rollout that starts or ends reaches every process
within that time; with Redis unreachable, the rollout last read stands.

A canary takes a request when a hash of the rollout's id and the request's
`routing_key` falls in its share, so one key always meets the same side during a
rollout; without a key, at random. A shadow copies a request at random.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from mlops.clients.redis.rollouts import RolloutStore
from mlops.contracts.rollouts import Rollout, RolloutMode


@dataclass
class _Cached:
    rollout: Rollout | None
    fresh_until: float


class RolloutRouter:
    def __init__(self, store: RolloutStore, *, refresh_seconds: float) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._cached: dict[str, _Cached] = {}
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._random = random.Random()

    def current(self, model: str) -> Rollout | None:
        """The model's rollout as last read; a read is started when that is stale."""
        cached = self._cached.get(model)
        if (
            cached is None or time.monotonic() >= cached.fresh_until
        ) and model not in self._reading:
            task = asyncio.create_task(self._read(model, cached), name=f"rollout-read-{model}")
            self._reading[model] = task
            task.add_done_callback(lambda _: self._reading.pop(model, None))
        return cached.rollout if cached else None

    async def _read(self, model: str, cached: _Cached | None) -> None:
        try:
            rollout = await self._store.active(model)
        except (RedisError, OSError):
            rollout = cached.rollout if cached else None
        self._cached[model] = _Cached(rollout, time.monotonic() + self._refresh_seconds)

    def forget(self, model: str) -> None:
        """Read the model's rollout again on its next request (this process changed it)."""
        self._cached.pop(model, None)

    def canary_takes(self, rollout: Rollout, routing_key: str | None) -> bool:
        if rollout.mode is not RolloutMode.CANARY:
            return False
        if routing_key is None:
            return self._random.random() * 100 < rollout.percent
        digest = hashlib.blake2b(f"{rollout.id}:{routing_key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest) % 10_000 < rollout.percent * 100

    def shadow_takes(self, rollout: Rollout) -> bool:
        return rollout.mode is RolloutMode.SHADOW and self._random.random() * 100 < rollout.percent
