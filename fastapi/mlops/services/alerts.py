"""Fan-out of the alert stream to Server-Sent Events clients.

One reader per API process follows the Redis stream and copies each alert into a
bounded queue per connected client, so N clients cost one Redis connection, not N.
A client whose queue overflows is ended, not silently skipped: its browser reconnects
with Last-Event-ID and the backlog comes from Redis, so no alert is lost either way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from redis.exceptions import RedisError

from mlops.aio import Background
from mlops.clients.redis import AlertStream
from mlops.schemas import Alert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """An SSE event; alerts are serialised once for every client."""

    id: str
    json: str
    kind: str = "alert"


_CLOSED = Event(id="", json="")


def stream_id_key(stream_id: str) -> tuple[int, int]:
    millis, _, seq = stream_id.partition("-")
    return int(millis), int(seq or 0)


def is_stream_id(value: str) -> bool:
    try:
        stream_id_key(value)
    except ValueError:
        return False
    return True


class AlertBroadcaster:
    def __init__(
        self,
        stream: AlertStream,
        *,
        queue_size: int = 1024,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        self._stream = stream
        self._on_alert = on_alert
        self._queue_size = queue_size
        self._clients: set[asyncio.Queue[Event]] = set()
        self.healthy = False

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._clients.add(queue)
        try:
            yield queue
        finally:
            self._clients.discard(queue)

    def _deliver(self, alert: Alert) -> None:
        if self._on_alert:
            self._on_alert(alert)
        event = Event(alert.id, alert.model_dump_json())
        for queue in list(self._clients):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("an SSE client fell %d alerts behind; closing it", self._queue_size)
                self._clients.discard(queue)
                queue.get_nowait()  # make room for the close marker
                queue.put_nowait(_CLOSED)

    async def run(self, background: Background) -> None:
        """Follow the stream until the app stops, riding out Redis outages."""
        last_id: str | None = None
        delay = 0.2
        while background.running:
            try:
                if last_id is None:
                    last_id = await self._stream.last_id()
                for alert in await self._stream.wait_after(last_id, block_ms=5000):
                    self._deliver(alert)
                    last_id = alert.id
                self.healthy, delay = True, 0.2
            except (RedisError, OSError) as exc:
                if self.healthy:
                    log.warning("alert stream unavailable, retrying: %s", exc)
                self.healthy = False
                await background.pause(delay)
                delay = min(delay * 2, 5.0)


async def alert_events(
    broadcaster: AlertBroadcaster, stream: AlertStream, last_event_id: str | None
) -> AsyncIterator[Event]:
    """A `ready` event, the alerts after last_event_id (from Redis), then live ones.

    `ready` carries the stream position at subscription as its id, so a client that
    drops before any alert arrives still resumes from the moment it connected.
    """
    with broadcaster.subscribe() as queue:  # subscribed before reading: no gap
        sent = last_event_id or await stream.last_id()
        yield Event(sent, json.dumps({"cursor": sent}), kind="ready")
        while backlog := await stream.after(sent):
            for alert in backlog:
                yield Event(alert.id, alert.model_dump_json())
                sent = alert.id
        while True:
            event = await queue.get()
            if event is _CLOSED:
                return
            if stream_id_key(event.id) <= stream_id_key(sent):
                continue  # already sent from the backlog
            yield event
            sent = event.id
