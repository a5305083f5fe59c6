"""What a Serve replica served, kept for drift checks without slowing it down.

Answering a request only appends its rows to a bounded in-memory buffer (O(1)); once a
second a task sends at most `per_second` of them, picked at random, to Redis. So the
sample follows all traffic at low rates and is a uniform subsample at high ones, and a
Redis outage costs the sample, never a prediction.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict, deque

import numpy as np
from redis.exceptions import RedisError

from mlops.contracts.recording import ServedRowsSink

log = logging.getLogger("ray.serve")


class ServedRows:
    def __init__(self, *, per_second: int = 100, buffer: int = 2000) -> None:
        self._per_second = per_second
        self._buffer: deque[tuple[str, str, np.ndarray]] = deque(maxlen=buffer)

    def add(self, registered_model: str, version: str, rows: np.ndarray) -> None:
        self._buffer.append((registered_model, version, rows))

    def _take(self) -> dict[str, dict[str, list[list[float]]]]:
        """The sample: rows by registered model, then by version."""
        taken = [
            (model, version, row) for model, version, rows in self._buffer for row in rows.tolist()
        ]
        self._buffer.clear()
        if len(taken) > self._per_second:
            taken = random.sample(taken, self._per_second)
        by_model: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
        for model, version, row in taken:
            by_model[model][version].append(row)
        return by_model

    async def flush_forever(self, samples: ServedRowsSink) -> None:
        while True:
            await asyncio.sleep(1.0)
            if not self._buffer:
                continue
            try:
                for model, rows_by_version in self._take().items():
                    await samples.append(model, rows_by_version)
            except (RedisError, OSError) as exc:
                log.warning("drift sample not stored (Redis: %s)", exc)
