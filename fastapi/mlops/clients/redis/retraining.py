"""The retraining loop's state: the retraining in flight per model (claimed with its
cooldown in one step), the canaries it started, and each model's steps."""

from __future__ import annotations

from enum import StrEnum

from redis.asyncio import Redis

from mlops.clients.redis.keys import (
    RETRAINING_IN_FLIGHT,
    RETRAINING_ROLLOUTS,
    RETRAINING_STEPS_KEPT,
    retraining_cooldown_key,
    retraining_steps_key,
)
from mlops.clients.redis.records import newest_records
from mlops.clients.redis.scripts import CLAIM_RETRAINING, SWAP_FIELD
from mlops.contracts.retraining import Retraining, RetrainingStep


class Claim(StrEnum):
    CLAIMED = "claimed"
    IN_FLIGHT = "in_flight"  # the model has a retraining under way
    COOLING = "cooling"  # one started less than the cooldown ago


class RetrainingStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._claim = redis.register_script(CLAIM_RETRAINING)
        self._swap = redis.register_script(SWAP_FIELD)

    async def claim(self, retraining: Retraining, cooldown_s: int) -> Claim:
        """Put `retraining` in flight, unless its model has one or is cooling down."""
        answer = await self._claim(
            keys=[RETRAINING_IN_FLIGHT, retraining_cooldown_key(retraining.model)],
            args=[retraining.model, retraining.model_dump_json(), max(1, cooldown_s)],
        )
        return Claim(answer)

    async def in_flight(self) -> list[Retraining]:
        raw = await self._redis.hgetall(RETRAINING_IN_FLIGHT)
        return [Retraining.model_validate_json(value) for value in raw.values()]

    async def replace(self, was: Retraining, now: Retraining) -> bool:
        """`now` in place of `was`, if `was` is still the model's retraining."""
        return await self._swap_field(RETRAINING_IN_FLIGHT, was.model, was, now)

    async def conclude(self, was: Retraining) -> bool:
        """Take the model's retraining out of flight; True for the one caller that did."""
        return await self._swap_field(RETRAINING_IN_FLIGHT, was.model, was, None)

    async def watch_rollout(self, rollout_id: str, retraining: Retraining) -> None:
        await self._redis.hset(RETRAINING_ROLLOUTS, rollout_id, retraining.model_dump_json())

    async def take_rollout(self, rollout_id: str) -> Retraining | None:
        """The retraining behind a rollout that ended, once: None for any other rollout."""
        raw = await self._redis.hget(RETRAINING_ROLLOUTS, rollout_id)
        if raw is None:
            return None
        taken = await self._swap(keys=[RETRAINING_ROLLOUTS], args=[rollout_id, raw])
        return Retraining.model_validate_json(raw) if taken else None

    async def record(self, model: str, step: RetrainingStep) -> None:
        await self._redis.xadd(
            retraining_steps_key(model),
            {"step": step.model_dump_json()},
            maxlen=RETRAINING_STEPS_KEPT,
            approximate=True,
        )

    async def steps(self, model: str, limit: int) -> list[RetrainingStep]:
        """Newest first."""
        return await newest_records(
            self._redis, retraining_steps_key(model), "step", RetrainingStep, limit
        )

    async def _swap_field(
        self, key: str, field: str, was: Retraining, now: Retraining | None
    ) -> bool:
        args = [field, was.model_dump_json()]
        if now is not None:
            args.append(now.model_dump_json())
        return bool(await self._swap(keys=[key], args=args))
