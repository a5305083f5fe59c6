"""The Redis connection and the two things the platform keeps there: alerts and jobs.

Alerts are a capped Stream, so every reader sees every alert and a reader that was
away resumes from the id it last saw. Jobs are one hash each plus a sorted index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from mlops.schemas import Alert, AlertLevel
from mlops.settings import Settings

ALERT_STREAM = "mlops:alerts"
JOB_INDEX = "mlops:jobs"


def connect(settings: Settings) -> Redis:
    """A client whose pool makes bursts (hundreds of SSE clients connecting at once)
    wait briefly for a connection instead of failing."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=10,
        password=password,
        decode_responses=True,
        socket_connect_timeout=3,
        health_check_interval=15,
    )
    return Redis(connection_pool=pool, auto_close_connection_pool=True)


def _now() -> datetime:
    return datetime.now(UTC)


def _decode_alert(entry_id: str, fields: Mapping[str, str]) -> Alert:
    return Alert(
        id=entry_id,
        level=fields["level"],  # type: ignore[arg-type]
        text=fields["text"],
        kind=fields["kind"],
        created_at=datetime.fromisoformat(fields["created_at"]),
        data=json.loads(fields["data"]) if fields.get("data") else None,
    )


class AlertStream:
    def __init__(self, redis: Redis, *, max_len: int) -> None:
        self._redis = redis
        self._max_len = max_len

    async def publish(
        self, level: AlertLevel, text: str, *, kind: str, data: dict[str, Any] | None = None
    ) -> Alert:
        fields = {"level": level, "text": text, "kind": kind, "created_at": _now().isoformat()}
        if data:
            fields["data"] = json.dumps(data)
        entry_id = await self._redis.xadd(
            ALERT_STREAM, fields, maxlen=self._max_len, approximate=True
        )
        return _decode_alert(entry_id, fields)

    async def recent(self, limit: int) -> list[Alert]:
        """Newest first."""
        entries = await self._redis.xrevrange(ALERT_STREAM, count=limit)
        return [_decode_alert(entry_id, fields) for entry_id, fields in entries]

    async def after(self, last_id: str, limit: int = 1000) -> list[Alert]:
        """Alerts newer than last_id, oldest first."""
        entries = await self._redis.xrange(ALERT_STREAM, min=f"({last_id}", count=limit)
        return [_decode_alert(entry_id, fields) for entry_id, fields in entries]

    async def last_id(self) -> str:
        newest = await self._redis.xrevrange(ALERT_STREAM, count=1)
        return newest[0][0] if newest else "0-0"

    async def wait_after(self, last_id: str, *, block_ms: int) -> list[Alert]:
        """Block up to block_ms for alerts newer than last_id."""
        reply = await self._redis.xread({ALERT_STREAM: last_id}, block=block_ms, count=500)
        return [
            _decode_alert(entry_id, fields) for _, entries in reply for entry_id, fields in entries
        ]


# Check-and-set in one step, so a late "running" never overwrites a final status.
_MARK_RUNNING = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == '"pending"' or status == '"running"' then
  redis.call('HSET', KEYS[1], 'status', ARGV[1])
  redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2])
  return 1
end
return 0
"""


def _job_key(job_id: str) -> str:
    return f"mlops:job:{job_id}"


class JobStore:
    """Training job records. Values are JSON so types survive the round trip."""

    def __init__(self, redis: Redis, *, history: int) -> None:
        self._redis = redis
        self._history = history

    async def create(self, job_id: str, *, hyperparameters: dict[str, Any], source: str) -> None:
        created = _now()
        record = {
            "job_id": job_id,
            "status": "pending",
            "hyperparameters": hyperparameters,
            "source": source,
            "created_at": created.isoformat(),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(_job_key(job_id), mapping={k: json.dumps(v) for k, v in record.items()})
            pipe.zadd(JOB_INDEX, {job_id: created.timestamp()})
            await pipe.execute()
        await self._trim()

    async def _trim(self) -> None:
        stale = await self._redis.zrange(JOB_INDEX, 0, -self._history - 1)
        if stale:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(JOB_INDEX, *stale)
                pipe.delete(*(_job_key(job_id) for job_id in stale))
                await pipe.execute()

    async def update(self, job_id: str, **fields: Any) -> None:
        await self._redis.hset(
            _job_key(job_id), mapping={k: json.dumps(v) for k, v in fields.items()}
        )

    async def mark_running(self, job_id: str, started_at: str) -> bool:
        """Mark a job running (first start time wins); False once it has finished."""
        changed = await self._redis.eval(
            _MARK_RUNNING, 1, _job_key(job_id), json.dumps("running"), json.dumps(started_at)
        )
        return bool(changed)

    async def delete(self, job_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(JOB_INDEX, job_id)
            pipe.delete(_job_key(job_id))
            await pipe.execute()

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hgetall(_job_key(job_id))
        return {k: json.loads(v) for k, v in raw.items()} if raw else None

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        job_ids = await self._redis.zrevrange(JOB_INDEX, 0, limit - 1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(_job_key(job_id))
            raws = await pipe.execute()  # one round trip, not one per job
        return [{k: json.loads(v) for k, v in raw.items()} for raw in raws if raw]

    async def claim_final_alert(self, job_id: str) -> bool:
        """True for exactly one caller per job: the job itself or a reconciling API replica."""
        return bool(await self._redis.hsetnx(_job_key(job_id), "alerted", "true"))
