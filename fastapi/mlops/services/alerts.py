"""Fan-out of the alert stream to Server-Sent Events clients.

One reader per API process follows the Redis stream and copies each alert into a
bounded queue per connected client, so N clients cost one Redis connection, not N.
Each alert is encoded once, and every client is sent the same bytes. Keep-alive pings
go the same way, from one loop: an idle client costs no timer. A client whose queue
overflows is ended, not silently skipped: its browser reconnects with Last-Event-ID and
the backlog comes from Redis, so no alert is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from redis.exceptions import RedisError

from mlops import sse
from mlops.background import Background
from mlops.clients.redis import AlertStream
from mlops.retry import backoff
from mlops.schemas import Alert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """What a client's queue holds: an SSE frame, encoded once for every client, and for
    an alert its stream position, parsed once too (each client compares it)."""

    frame: bytes
    kind: Literal["alert", "ping", "closed"] = "alert"
    key: tuple[int, int] = (0, 0)


_CLOSED = Event(frame=b"", kind="closed")
_PING = Event(frame=sse.PING, kind="ping")


def alert_frame(alert: Alert) -> bytes:
    """Alerts are unnamed (`message`) events, so a plain `EventSource.onmessage` gets them."""
    return sse.frame(alert.model_dump_json(), event_id=alert.id)


class Subscription:
    """One client's place in the fan-out: a bounded queue the feed fills, closed by the
    feed when the client falls behind or by the web layer when the client leaves."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(size)
        self.live = False  # its stream is past the backlog, on live events

    def offer(self, event: Event) -> bool:
        """Queue the event; False when the client is already `size` events behind."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def close(self) -> None:
        """End the stream now. What it still holds is dropped, not sent: the client
        reconnects with the last id it got and replays the rest from Redis, in order."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)

    async def next(self) -> Event:
        self.live = True
        return await self._queue.get()


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
        reconnect_ms: int = 2000,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        self._stream = stream
        self._max_clients = max_clients
        self._max_replay = max_replay
        self._reconnect_ms = reconnect_ms
        self._on_alert = on_alert
        self._queue_size = queue_size
        self._clients: set[Subscription] = set()
        self._cursor: str | None = None  # the stream id read up to
        self.healthy = False

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def full(self) -> bool:
        """As many SSE clients as this process takes (MLOPS_SSE_MAX_CLIENTS)."""
        return len(self._clients) >= self._max_clients

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        subscription = Subscription(self._queue_size)
        self._clients.add(subscription)
        try:
            yield subscription
        finally:
            self._clients.discard(subscription)

    def _deliver(self, alert: Alert) -> None:
        if self._on_alert:
            self._on_alert(alert)
        event = Event(alert_frame(alert), key=stream_id_key(alert.id))
        for client in list(self._clients):
            if not client.offer(event):
                log.warning("an SSE client fell %d alerts behind; closing it", self._queue_size)
                self._clients.discard(client)
                client.close()

    async def ping_forever(self, background: Background, seconds: float) -> None:
        """Every `seconds`, a keep-alive to every client (proxies cut silent streams)."""
        while background.running:
            await background.pause(seconds)
            for client in list(self._clients):
                client.offer(_PING)  # a full queue is not idle: no ping needed
            background.completed_round()

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
                background.completed_round()

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

    async def recent(self, limit: int, model: str | None = None) -> list[Alert]:
        """The latest alerts, newest first; with `model`, those naming it."""
        return await self._stream.recent(limit, model=model)

    async def frames(
        self, last_event_id: str | None, subscription: Subscription
    ) -> AsyncGenerator[bytes, None]:
        """A `ready` event, the alerts after last_event_id (from Redis), then live ones,
        until the subscription is closed. Subscribe before calling: then nothing
        published meanwhile falls between the backlog and the live alerts.

        `ready` carries the stream position at subscription as its id, so a client that
        drops before any alert arrives still resumes from the moment it connected; its
        `retry` tells the browser how soon to reconnect if the stream drops.
        """
        sent = await self._replay_from(last_event_id)
        yield sse.frame(
            json.dumps({"cursor": sent}), event_id=sent, event="ready", retry_ms=self._reconnect_ms
        )
        while backlog := await self._stream.after(sent):
            for alert in backlog:
                yield alert_frame(alert)
                sent = alert.id
        sent_key = stream_id_key(sent)
        while (event := await subscription.next()) is not _CLOSED:
            if event.kind == "alert":
                if event.key <= sent_key:
                    continue  # already sent from the backlog
                sent_key = event.key
            yield event.frame
