"""Every move of a model's champion alias (training jobs, promotions, rollbacks)."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from redis.asyncio import Redis

from mlops.clients.redis.keys import HISTORY_LENGTH, champion_moves_key, job_key
from mlops.clients.redis.scripts import APPEND_ONCE
from mlops.contracts.champion import ChampionMove

log = logging.getLogger(__name__)


class ChampionMoves:
    """Every move of the champion alias, oldest first in the stream: by training jobs
    and by people (promote, roll back). Kept in Redis with the jobs and alerts."""

    def __init__(self, redis: Redis, *, model_name: str) -> None:
        self._redis = redis
        self._key = champion_moves_key(model_name)
        self._append_once = redis.register_script(APPEND_ONCE)

    async def record(self, move: ChampionMove) -> None:
        await self._redis.xadd(self._key, {"move": move.model_dump_json()}, maxlen=HISTORY_LENGTH)

    async def record_for_job(self, job_id: str, move: ChampionMove) -> None:
        """A training job's move, recorded once however often the job retries."""
        await self._append_once(
            keys=[job_key(job_id), self._key],
            args=["champion_recorded", HISTORY_LENGTH, "move", move.model_dump_json()],
        )

    async def moves(self, limit: int = HISTORY_LENGTH) -> list[ChampionMove]:
        """Newest first; an entry that does not parse is skipped with one log line."""
        moves = []
        for entry_id, fields in await self._redis.xrevrange(self._key, count=limit):
            try:
                moves.append(ChampionMove.model_validate_json(fields["move"]))
            except (KeyError, ValidationError) as exc:
                log.warning("skipped malformed champion move %s: %s", entry_id, exc)
        return moves
