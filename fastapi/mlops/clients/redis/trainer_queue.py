"""Jobs (trainings and searches) handed to the warm trainer through Redis: the API
pushes each one once Ray has accepted it; the trainer takes them as they come. Only a
fast path: a job nobody takes is started by its entrypoint (`ml/trainer.py`)."""

from __future__ import annotations

from redis.asyncio import Redis

from mlops.clients.redis.keys import TRAINER_QUEUE_MAX_AGE_S, trainer_queue_key
from mlops.contracts.trainer import QueuedJob


class TrainerQueue:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def push(self, trainer: str, job: QueuedJob) -> None:
        key = trainer_queue_key(trainer)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, job.model_dump_json())
            # A queue no trainer reads (none started yet) does not outlive its jobs.
            pipe.expire(key, TRAINER_QUEUE_MAX_AGE_S)
            await pipe.execute()

    async def take(self, trainer: str, *, timeout_s: float) -> QueuedJob | None:
        """The oldest job waiting, blocking up to timeout_s; None if none came."""
        found = await self._redis.brpop([trainer_queue_key(trainer)], timeout=timeout_s)
        return QueuedJob.model_validate_json(found[1]) if found else None
