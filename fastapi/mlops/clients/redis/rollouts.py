"""Rollouts in progress, one per model at most, and the last ones each model ended."""

from __future__ import annotations

from redis.asyncio import Redis

from mlops.clients.redis.keys import ENDED_ROLLOUTS_KEPT, ROLLOUTS, ended_rollouts_key
from mlops.clients.redis.scripts import END_ROLLOUT
from mlops.contracts.rollouts import Rollout, RolloutEnd


class RolloutStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._end = redis.register_script(END_ROLLOUT)

    async def start(self, rollout: Rollout) -> bool:
        """False: the model has a rollout in progress already."""
        return bool(await self._redis.hsetnx(ROLLOUTS, rollout.model, rollout.model_dump_json()))

    async def active(self, model: str) -> Rollout | None:
        found = await self._redis.hget(ROLLOUTS, model)
        return Rollout.model_validate_json(found) if found else None

    async def all_active(self) -> list[Rollout]:
        found = await self._redis.hgetall(ROLLOUTS)
        return [Rollout.model_validate_json(text) for text in found.values()]

    async def end(self, ending: RolloutEnd) -> bool:
        """False: it had ended already (another API process saw it first)."""
        rollout = ending.rollout
        keys = [ROLLOUTS, ended_rollouts_key(rollout.model)]
        args = [rollout.model, rollout.id, ending.model_dump_json(), ENDED_ROLLOUTS_KEPT]
        return bool(await self._end(keys=keys, args=args))

    async def ended(self, model: str, limit: int = ENDED_ROLLOUTS_KEPT) -> list[RolloutEnd]:
        found = await self._redis.lrange(ended_rollouts_key(model), 0, limit - 1)
        return [RolloutEnd.model_validate_json(text) for text in found]
