"""Fan-out of the alert stream to Server-Sent Events clients.

One reader per API process follows the Redis stream and copies each alert into a
bounded queue per connected client, so N clients cost one Redis connection, not N.
Keep-alive pings go the same way, from one loop: an idle client costs no timer.
A client whose queue overflows is ended, not silently skipped: its browser reconnects
with Last-Event-ID and the backlog comes from Redis, so no alert is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.redis import AlertStream
from mlops.retry import backoff
from mlops.schemas import Alert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """An SSE event; alerts are serialised once for every client. Alerts are unnamed
    (`message`) events, so a plain `EventSource.onmessage` receives them."""

    id: str
    json: str
    kind: Literal["message", "ready", "ping"] = "message"


_CLOSED = Event(id="", json="")
_PING = Event(id="", json="", kind="ping")


def stream_id_key(stream_id: str) -> tuple[int, int]:
    millis, _, seq = stream_id.partition("-")
    return int(millis), int(seq or 0)


def is_stream_id(value: str) -> bool:
    try:
        stream_id_key(value)
    except ValueError:
        return False
    return True


class AlertFeed:
    """The alert stream for clients: history, and live fan-out to SSE clients."""

    def __init__(
        self,
        stream: AlertStream,
        *,
        queue_size: int = 1024,
        max_clients: int = 4000,
        max_replay: int = 1000,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        self._stream = stream
        self._max_clients = max_clients
        self._max_replay = max_replay
        self._on_alert = on_alert
        self._queue_size = queue_size
        self._clients: set[asyncio.Queue[Event]] = set()
        self._cursor: str | None = None  # the stream id read up to
        self.healthy = False

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def full(self) -> bool:
        """As many SSE clients as this process takes (MLOPS_SSE_MAX_CLIENTS)."""
        return len(self._clients) >= self._max_clients

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

    async def ping_forever(self, background: Background, seconds: float) -> None:
        """Every `seconds`, a keep-alive to every client (proxies cut silent streams)."""
        while background.running:
            await background.pause(seconds)
            for queue in list(self._clients):
                with contextlib.suppress(asyncio.QueueFull):  # a full queue is not idle
                    queue.put_nowait(_PING)

    async def run(self, background: Background) -> None:
        """Follow the stream until the app stops, riding out Redis outages (the backoff
        starts again from its first delay after each read that succeeds)."""
        with contextlib.suppress(RedisError, OSError):  # the last failure, when stopping
            while background.running:
                async for attempt in backoff(
                    on=(RedisError, OSError),
                    first=0.2,
                    cap=5.0,
                    stop_when=lambda: not background.running,
                    sleep=background.pause,
                ):
                    with attempt:
                        await self._follow()

    async def _follow(self) -> None:
        """One blocking read of the stream; delivers what came and moves the cursor.

        The cursor is set once, at the first read, and only ever moves forward: alerts
        published during an outage are read when Redis is back, not skipped.
        """
        try:
            if self._cursor is None:
                self._cursor = await self._stream.last_id()
            self._cursor, alerts = await self._stream.wait_after(self._cursor, block_ms=5000)
        except (RedisError, OSError) as exc:
            if self.healthy:
                log.warning("alert stream unavailable, retrying: %s", exc)
            self.healthy = False
            raise
        self.healthy = True
        for alert in alerts:
            self._deliver(alert)

    async def _replay_from(self, last_event_id: str | None) -> str:
        """Where a client's replay starts: after its last event, but never more than
        MLOPS_SSE_MAX_REPLAY alerts back (a `since=0` must not send the whole history)."""
        if not last_event_id:
            return await self._stream.last_id()
        oldest_replayed = await self._stream.nth_newest_id(self._max_replay)
        if oldest_replayed and stream_id_key(last_event_id) < stream_id_key(oldest_replayed):
            return oldest_replayed
        return last_event_id

    async def recent(self, limit: int) -> list[Alert]:
        """The latest alerts, newest first."""
        return await self._stream.recent(limit)

    async def events(self, last_event_id: str | None) -> AsyncIterator[Event]:
        """A `ready` event, the alerts after last_event_id (from Redis), then live ones.

        `ready` carries the stream position at subscription as its id, so a client that
        drops before any alert arrives still resumes from the moment it connected.
        """
        with self.subscribe() as queue:  # subscribed before reading: no gap
            sent = await self._replay_from(last_event_id)
            yield Event(sent, json.dumps({"cursor": sent}), kind="ready")
            while backlog := await self._stream.after(sent):
                for alert in backlog:
                    yield Event(alert.id, alert.model_dump_json())
                    sent = alert.id
            while True:
                event = await queue.get()
                if event is _CLOSED:
                    return
                if event is _PING:
                    yield event
                    continue
                if stream_id_key(event.id) <= stream_id_key(sent):
                    continue  # already sent from the backlog
                yield event
                sent = event.id
