"""Records the background loops could not use, moved aside instead of stopping a loop.

A job record or a schedule that does not parse, or that makes its loop fail for a
reason of its own (not an outage), is moved here once, with the reason and its raw
fields, and taken out of its loop's way (the job's index and active set, the schedule
table). Nothing is lost: `GET /quarantine` lists them for someone to mend or delete, and
the stream is capped, so a flood of bad writes cannot fill Redis.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from mlops.clients.redis.keys import JOB_ACTIVE, JOB_INDEX, job_key
from mlops.clients.schedule_store import SCHEDULES, runs_key
from mlops.schemas import QuarantinedRecord, QuarantinedRecordKind

log = logging.getLogger(__name__)

QUARANTINE = "mlops:quarantine"
MAX_ENTRIES = 1000


class Quarantine:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def job(self, job_id: str, reason: str) -> None:
        """Move a job record aside: out of the index and the active set, so neither the
        reconciler nor the admission count sees it again."""
        fields = await self._redis.hgetall(job_key(job_id))
        async with self._redis.pipeline(transaction=True) as pipe:
            self._add(pipe, "job", job_id, reason, fields)
            pipe.delete(job_key(job_id))
            pipe.zrem(JOB_INDEX, job_id)
            pipe.srem(JOB_ACTIVE, job_id)
            await pipe.execute()
        log.error("job record %s quarantined (GET /quarantine lists it): %s", job_id, reason)

    async def schedule(self, schedule_id: str, reason: str) -> None:
        """Move a schedule aside: it no longer runs on any replica."""
        text = await self._redis.hget(SCHEDULES, schedule_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            self._add(pipe, "schedule", schedule_id, reason, {"record": text or ""})
            pipe.hdel(SCHEDULES, schedule_id)
            pipe.delete(runs_key(schedule_id))
            await pipe.execute()
        log.error("schedule %s quarantined (GET /quarantine lists it): %s", schedule_id, reason)

    @staticmethod
    def _add(
        pipe: Pipeline,
        kind: QuarantinedRecordKind,
        record_id: str,
        reason: str,
        fields: dict[str, str],
    ) -> None:
        entry = QuarantinedRecord(
            kind=kind,
            record_id=record_id,
            reason=reason,
            quarantined_at=datetime.now(UTC),
            fields=fields,
        )
        pipe.xadd(
            QUARANTINE, {"entry": entry.model_dump_json()}, maxlen=MAX_ENTRIES, approximate=True
        )

    async def entries(self, limit: int = 100) -> list[QuarantinedRecord]:
        """The newest first; an entry that does not parse itself is left out."""
        entries = []
        for _, data in await self._redis.xrevrange(QUARANTINE, count=limit):
            try:
                entries.append(QuarantinedRecord.model_validate(json.loads(data["entry"])))
            except (KeyError, ValueError) as exc:
                log.warning("skipped an unreadable quarantine entry: %s", exc)
        return entries
