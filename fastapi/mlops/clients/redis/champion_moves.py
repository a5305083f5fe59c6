"""Every move of a model's champion alias (training jobs, promotions, rollbacks)."""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from mlops.clients.redis.keys import HISTORY_LENGTH, champion_moves_key, job_key
from mlops.clients.redis.records import newest_records
from mlops.clients.redis.scripts import APPEND_ONCE
from mlops.contracts.champion import ChampionMove

log = logging.getLogger(__name__)


class ChampionMoves:
    """Every move of each model's champion alias, oldest first in the model's stream: by
    training jobs and by people (promote, roll back). Kept in Redis with the jobs and
    alerts."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._append_once = redis.register_script(APPEND_ONCE)

    async def record(self, model: str, move: ChampionMove) -> None:
        await self._redis.xadd(
            champion_moves_key(model), {"move": move.model_dump_json()}, maxlen=HISTORY_LENGTH
        )

    async def record_for_job(self, model: str, job_id: str, move: ChampionMove) -> None:
        """A training job's move, recorded once however often the job retries."""
        await self._append_once(
            keys=[job_key(job_id), champion_moves_key(model)],
            args=["champion_recorded", HISTORY_LENGTH, "move", move.model_dump_json()],
        )

    async def take_over(self, old_key_name: str, model: str) -> bool:
        """Give a model the history kept under another name (the registered model's, before
        models had names); once: nothing happens when the model has a history already."""
        old, new = champion_moves_key(old_key_name), champion_moves_key(model)
        if old == new or not await self._redis.exists(old):
            return False
        return bool(await self._redis.renamenx(old, new))

    async def moves(self, model: str, limit: int = HISTORY_LENGTH) -> list[ChampionMove]:
        """Newest first; an entry that does not parse is skipped with one log line."""
        key = champion_moves_key(model)
        return await newest_records(self._redis, key, "move", ChampionMove, limit)
