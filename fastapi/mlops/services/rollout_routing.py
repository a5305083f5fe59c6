"""Which side of a model's rollout answers a request, as every API process decides it.

Each process reads a model's rollout from Redis at most once per `refresh_seconds`, so
a rollout that starts or ends reaches every process within that time. With Redis
unreachable, the rollout last read stands (or none): predictions never wait on it.

A canary takes a request when a hash of the rollout's id and the request's
`routing_key` falls in its share, so one key always meets the same side during a
rollout; without a key, at random. A shadow copies a request at random.
"""

from __future__ import annotations

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
        self._random = random.Random()

    async def current(self, model: str) -> Rollout | None:
        now = time.monotonic()
        cached = self._cached.get(model)
        if cached is not None and now < cached.fresh_until:
            return cached.rollout
        try:
            rollout = await self._store.active(model)
        except (RedisError, OSError):
            rollout = cached.rollout if cached else None
        self._cached[model] = _Cached(rollout, now + self._refresh_seconds)
        return rollout

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
