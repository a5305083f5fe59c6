"""A lock across API replicas, so one of them at a time deploys Serve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from mlops.clients.redis.keys import DEPLOY_LOCK


class DeployLock:
    def __init__(self, redis: Redis, *, name: str = DEPLOY_LOCK, ttl: int = 300) -> None:
        self._redis = redis
        self._name = name
        self._ttl = ttl

    @asynccontextmanager
    async def held(self) -> AsyncIterator[bool]:
        """Yields True if this caller holds the lock (released on exit), else False."""
        mine = bool(await self._redis.set(self._name, "1", nx=True, ex=self._ttl))
        try:
            yield mine
        finally:
            if mine:
                await self._redis.delete(self._name)
