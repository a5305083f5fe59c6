"""Rows each model version served, kept for drift checks."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from mlops.clients.redis.keys import drift_sample_key


class DriftSamples:
    """Recent rows each version of each registered model served (one stream entry a
    row, the newest `max_rows` kept), written by the Serve replicas off the hot path and
    read by drift checks."""

    def __init__(self, redis: Redis, *, max_rows: int) -> None:
        self._redis = redis
        self._max_rows = max_rows

    async def append(
        self, model_name: str, rows_by_version: Mapping[str, Sequence[Sequence[float]]]
    ) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for version, rows in rows_by_version.items():
                for row in rows:
                    pipe.xadd(
                        drift_sample_key(model_name, version),
                        {"row": json.dumps(list(row))},
                        maxlen=self._max_rows,
                        approximate=True,
                    )
            await pipe.execute()

    async def recent(self, model_name: str, version: str) -> list[list[float]]:
        """The newest rows served by `version` (at most max_rows), newest first; an entry
        that is not a row of numbers is skipped."""
        key = drift_sample_key(model_name, version)
        entries = await self._redis.xrevrange(key, count=self._max_rows)
        rows = []
        for _, fields in entries:
            try:
                row = json.loads(fields["row"])
            except (KeyError, ValueError):
                continue
            if isinstance(row, list) and all(isinstance(v, int | float) for v in row):
                rows.append([float(v) for v in row])
        return rows
