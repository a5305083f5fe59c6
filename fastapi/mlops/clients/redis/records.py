"""Typed records kept one per entry of a capped Redis stream, as JSON in one field."""

from __future__ import annotations

import logging
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

log = logging.getLogger(__name__)

Record = TypeVar("Record", bound=BaseModel)


async def newest_records(
    redis: Redis, key: str, field: str, record: type[Record], limit: int
) -> list[Record]:
    """The stream's newest `limit` records, newest first; an entry that does not parse
    is skipped with one log line."""
    found = []
    for entry_id, fields in await redis.xrevrange(key, count=limit):
        try:
            found.append(record.model_validate_json(fields[field]))
        except (KeyError, ValidationError) as exc:
            log.warning("skipped malformed %s %s in %s: %s", record.__name__, entry_id, key, exc)
    return found
