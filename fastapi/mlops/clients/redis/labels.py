"""Each model's labelled predictions, read from its label stream incrementally.

A rollout's automatic check (every MLOPS_ROLLOUT_CHECK_SECONDS) and the live-metric
watch read every label of a window again and again: up to MLOPS_LABEL_HISTORY labels
a time. Read whole each time, that parse blocked the event loop for seconds at the
default history. Here each model's labels are read once, in chunks that yield to the
event loop between them, and then only the entries added since the newest one read.

The stream holds one entry per labelled prediction: a label sent again deletes the
entry it replaces and adds one at the end. Read incrementally, the replaced entry was
already read, so labels are kept by prediction id and a later one replaces it here too
(the last wins, as in the stream). The platform never deletes a label stream; one found
empty, or with its newest entry older than the newest one read (Redis lost its data and
labels came again), is read again from its start.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice, takewhile

from redis.asyncio import Redis

from mlops.clients.redis.keys import label_stream_key
from mlops.contracts.predictions import LabelledPrediction

# Entries a read: small enough that one chunk's parse is a short pause for requests.
READ_CHUNK = 1000


def _entry_order(entry_id: str) -> tuple[int, int]:
    milliseconds, sequence = entry_id.split("-")
    return int(milliseconds), int(sequence)


@dataclass
class _Window:
    """One model's labels read so far, by prediction id in the order they arrived."""

    newest_entry: str | None = None
    by_prediction: OrderedDict[str, LabelledPrediction] = field(default_factory=OrderedDict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def add(self, entry_id: str, item: LabelledPrediction) -> None:
        self.by_prediction.pop(item.prediction_id, None)
        self.by_prediction[item.prediction_id] = item
        self.newest_entry = entry_id

    def trim(self, *, max_labels: int, oldest_ms: int) -> None:
        """As the stream is trimmed: by count and by age, the oldest first."""
        labels = self.by_prediction
        while labels and (
            len(labels) > max_labels or next(iter(labels.values())).labelled_at_ms < oldest_ms
        ):
            labels.popitem(last=False)

    def newest_first(self) -> Iterator[LabelledPrediction]:
        return reversed(self.by_prediction.values())


class LabelReader:
    """Labelled predictions per model, kept as their streams are (count and age)."""

    def __init__(self, redis: Redis, *, max_labels: int, max_age_ms: int) -> None:
        self._redis = redis
        self._max_labels = max_labels
        self._max_age_ms = max_age_ms
        self._windows: dict[str, _Window] = {}

    async def since(self, model: str, since_ms: int) -> list[LabelledPrediction]:
        """The model's labelled predictions that arrived since `since_ms`, oldest first."""
        window = await self._caught_up(model)
        recent = takewhile(lambda item: item.labelled_at_ms >= since_ms, window.newest_first())
        return list(recent)[::-1]

    async def last(self, model: str, count: int) -> list[LabelledPrediction]:
        """The model's newest `count` labelled predictions, oldest first."""
        window = await self._caught_up(model)
        return list(islice(window.newest_first(), count))[::-1]

    async def _caught_up(self, model: str) -> _Window:
        window = self._windows.get(model)
        if window is None:
            window = self._windows[model] = _Window()
        async with window.lock:
            stream = label_stream_key(model)
            if window.newest_entry is not None and await self._restarted(stream, window):
                window.newest_entry = None
                window.by_prediction.clear()
            while True:
                after = "-" if window.newest_entry is None else f"({window.newest_entry}"
                entries = await self._redis.xrange(stream, min=after, count=READ_CHUNK)
                for entry_id, fields in entries:
                    window.add(entry_id, LabelledPrediction.from_entry(entry_id, fields))
                if len(entries) < READ_CHUNK:
                    break
            newest_ms = _entry_order(window.newest_entry)[0] if window.newest_entry else 0
            window.trim(max_labels=self._max_labels, oldest_ms=newest_ms - self._max_age_ms)
        return window

    async def _restarted(self, stream: str, window: _Window) -> bool:
        """Whether the stream no longer follows what was read: emptied, or created again."""
        assert window.newest_entry is not None
        newest = await self._redis.xrevrange(stream, count=1)
        return not newest or _entry_order(newest[0][0]) < _entry_order(window.newest_entry)
