"""Alerts over Server-Sent Events, against the real API and Valkey."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from helpers import SseReader, on_redis_db, run_async
from redis.asyncio import Redis

from mlops import sse
from mlops.background import Background
from mlops.clients.redis import AlertStream, connect
from mlops.clients.redis.keys import ALERT_STREAM
from mlops.contracts.alerts import Alert, AlertKind
from mlops.services.alerts import AlertFeed
from mlops.settings.platform import PlatformSettings


@pytest.fixture()
def publish(settings: PlatformSettings) -> Iterator:
    """Publish an alert into the real stream, as the training job does."""

    def _publish(text: str, level: str = "info") -> Alert:
        async def go() -> Alert:
            redis = connect(settings)
            try:
                stream = AlertStream(redis, max_len=settings.alert_history)
                return await stream.publish(level, text, kind=AlertKind.WATCH)  # type: ignore[arg-type]
            finally:
                await redis.aclose()

        return run_async(go())

    yield _publish


@pytest.fixture()
def readers(api_url: str) -> Iterator[list[SseReader]]:
    opened: list[SseReader] = []
    yield opened
    for reader in opened:
        reader.close()


def test_two_clients_both_receive_the_same_alert(api_url, publish, readers) -> None:
    readers += [SseReader(f"{api_url}/webhook"), SseReader(f"{api_url}/webhook")]
    for reader in readers:
        reader.next("ready")

    sent = publish("both of you", level="warning")

    received = [reader.next("message") for reader in readers]
    assert [event.id for event in received] == [sent.id, sent.id]
    assert all(event.json()["text"] == "both of you" for event in received)
    assert all(event.json()["level"] == "warning" for event in received)


def test_reconnecting_with_last_event_id_replays_what_was_missed(api_url, publish, readers) -> None:
    first = publish("seen")
    missed = [publish("missed 1"), publish("missed 2")]

    readers.append(SseReader(f"{api_url}/webhook", headers={"Last-Event-ID": first.id}))

    replayed = [readers[0].next("message"), readers[0].next("message")]
    assert [event.id for event in replayed] == [alert.id for alert in missed]
    live = publish("live")
    assert readers[0].next("message").id == live.id


def test_ready_event_carries_the_position_to_resume_from(api_url, publish, readers) -> None:
    readers.append(SseReader(f"{api_url}/webhook"))
    cursor = readers[0].next("ready").id
    readers[0].close()
    while_away = publish("while nobody listened")

    readers.append(SseReader(f"{api_url}/webhook", headers={"Last-Event-ID": cursor}))

    assert readers[1].next("message").id == while_away.id


def test_invalid_last_event_id_is_422(api: httpx.Client) -> None:
    response = api.get("/webhook", headers={"Last-Event-ID": "yesterday"})

    assert response.status_code == 422
    assert "yesterday" in response.json()["detail"]


def test_recent_alerts_are_newest_first(api: httpx.Client, publish) -> None:
    older, newer = publish("older"), publish("newer")

    alerts = api.get("/alerts", params={"limit": 2}).json()["alerts"]

    assert [a["id"] for a in alerts] == [newer.id, older.id]


@pytest.fixture()
def write_junk(settings: PlatformSettings) -> Iterator:
    """XADD entries that are not alerts into the real stream, as anyone with Redis could."""

    def _write(*entries: dict[str, str]) -> None:
        async def go() -> None:
            redis = connect(settings)
            try:
                for fields in entries:
                    await redis.xadd(ALERT_STREAM, fields)
            finally:
                await redis.aclose()

        run_async(go())

    yield _write


_JUNK = (
    {"junk": "no alert fields at all"},
    {"level": "info", "text": "bad data", "kind": "x", "created_at": "2026-01-01", "data": "{"},
    {"level": "panic", "text": "t", "kind": "x", "created_at": "2026-01-01T00:00:00+00:00"},
    {"level": "info", "text": "t", "kind": "x", "created_at": "not a time"},
)


def test_malformed_alerts_are_skipped_and_the_feed_goes_on(
    api: httpx.Client, api_url, publish, readers, write_junk
) -> None:
    readers.append(SseReader(f"{api_url}/webhook"))
    readers[0].next("ready")

    write_junk(*_JUNK)
    after = publish("after the junk")

    assert readers[0].next("message").id == after.id
    history = api.get("/alerts", params={"limit": 20})
    assert history.status_code == 200
    assert history.json()["alerts"][0]["id"] == after.id


def test_a_replay_across_malformed_alerts_delivers_the_good_ones(
    api_url, publish, readers, write_junk
) -> None:
    before = publish("before")
    write_junk(*_JUNK)
    good = publish("good")

    readers.append(SseReader(f"{api_url}/webhook", headers={"Last-Event-ID": before.id}))

    assert readers[0].next("message").id == good.id


def test_alert_streams_beyond_the_cap_get_503_with_retry_after(start_api) -> None:
    api, _ = start_api(sse_max_clients=2)
    base = str(api.base_url)
    held = [SseReader(f"{base}/webhook"), SseReader(f"{base}/webhook")]
    try:
        for reader in held:
            reader.next("ready")

        refused = api.get("/webhook")

        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert "MLOPS_SSE_MAX_CLIENTS" in refused.json()["detail"]
    finally:
        for reader in held:
            reader.close()


def test_a_client_that_leaves_frees_its_place_at_once(start_api) -> None:
    api, _ = start_api(sse_max_clients=1)
    first = SseReader(f"{api.base_url}/webhook")
    first.next("ready")
    first.close()

    second = SseReader(f"{api.base_url}/webhook")
    try:
        second.next("ready", timeout=3)  # within the cap of one: the first one's place
    finally:
        second.close()


def test_an_open_stream_ends_with_the_graceful_timeout_and_the_api_exits_cleanly(
    start_api,
) -> None:
    api, running = start_api()
    reader = SseReader(f"{api.base_url}/webhook")
    try:
        reader.next("ready")
        started = time.monotonic()
        running.process.terminate()
        code = running.process.wait(20)
        took = time.monotonic() - started
    finally:
        reader.close()

    assert code == -signal.SIGTERM, running.tail()
    assert took < 13  # uvicorn's --timeout-graceful-shutdown is 10 s
    assert "Application shutdown complete" in running.log_path.read_text()


def test_a_resume_replays_at_most_the_newest_alerts(start_api, settings: PlatformSettings) -> None:
    api, _ = start_api(sse_max_replay=3, redis_db=14)
    mine = on_redis_db(settings, 14)

    async def publish_five() -> list[Alert]:
        redis = connect(mine)
        try:
            stream = AlertStream(redis, max_len=1000)
            return [
                await stream.publish("info", f"old {i}", kind=AlertKind.WATCH) for i in range(5)
            ]
        finally:
            await redis.aclose()

    sent = run_async(publish_five())
    reader = SseReader(f"{api.base_url}/webhook?since=0-0")
    try:
        ready = reader.next("ready")
        replayed = [reader.next("message").id for _ in range(3)]

        assert ready.id == sent[1].id  # the replay starts after the fourth newest
        assert replayed == [alert.id for alert in sent[2:]]
        with pytest.raises(pytest.fail.Exception):
            reader.next("message", timeout=1)  # nothing older follows
    finally:
        reader.close()


def test_idle_streams_get_keep_alive_comments_from_one_loop(start_api) -> None:
    """Every client gets a `: ping` comment each MLOPS_SSE_PING_SECONDS (an EventSource
    ignores comments), from the feed's one loop (bench/core.py measures the idle CPU)."""
    api, _ = start_api(sse_ping_seconds=0.3)
    base = str(api.base_url)

    def comments(lines: list[str]) -> None:
        with httpx.stream("GET", f"{base}/webhook", timeout=10) as response:
            started = time.monotonic()
            for line in response.iter_lines():
                lines.append(line)
                if time.monotonic() - started > 1.5:
                    return

    first: list[str] = []
    second: list[str] = []
    threads = [threading.Thread(target=comments, args=(got,)) for got in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    for got in (first, second):
        assert sum(line == ": ping" for line in got) >= 3, got
        assert not any(line.startswith("event: ping") for line in got)


def test_a_client_that_falls_behind_is_closed_and_its_resume_loses_nothing(
    platform, settings: PlatformSettings
) -> None:
    """A client whose queue overflows gets nothing more on that stream, not even what
    its queue held: it resumes from the last alert it got, and the replay from Redis
    brings the rest in order."""
    mine = on_redis_db(settings, 13)

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        redis = connect(mine)
        stream = AlertStream(redis, max_len=1000)
        feed = AlertFeed(stream, queue_size=2)
        background = Background()
        background.start("alert-feed", lambda: feed.run(background))
        try:
            await wait_until(lambda: feed.healthy)
            with feed.subscribe() as subscription:
                frames = feed.frames(None, subscription)
                first_stream = [await anext(frames)]  # ready
                live = asyncio.ensure_future(anext(frames))
                await wait_until(lambda: subscription.live)  # past the (empty) backlog
                published = [(await stream.publish("info", "1", kind=AlertKind.WATCH)).id]
                first_stream.append(await live)
                for text in "2345":  # two fit in the queue; the third overflows it
                    published.append((await stream.publish("info", text, kind=AlertKind.WATCH)).id)
                await wait_until(lambda: feed.client_count == 0)
                first_stream += [frame async for frame in frames]
            got = [event.id for event in sse.events(b"".join(first_stream).decode().splitlines())]
            with feed.subscribe() as subscription:
                frames = feed.frames(got[-1], subscription)
                resumed = [await anext(frames) for _ in range(5)]  # ready, then the backlog
            replayed = [event.id for event in sse.events(b"".join(resumed).decode().splitlines())]
            return published, got, replayed
        finally:
            await background.stop()
            await redis.aclose()

    published, got, replayed = run_async(scenario())

    assert got[1:] == published[:1]  # after `ready`: the one alert read in time
    assert replayed[1:] == published[1:]  # after `ready`: all the others, in order


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_an_idle_blocking_read_returns_empty_instead_of_timing_out(
    platform, settings: PlatformSettings
) -> None:
    """The feed's XREAD blocks 5 s when no alert comes; the connection's socket timeout
    must outlast it, or an idle feed fails every read and retries."""
    mine = on_redis_db(settings, 13)

    async def idle_read() -> tuple[str, list[Alert], float]:
        redis = connect(mine)
        try:
            stream = AlertStream(redis, max_len=1000)
            cursor = await stream.last_id()
            started = time.monotonic()
            read_to, alerts = await stream.wait_after(cursor, block_ms=5000)
            return read_to if read_to != cursor else "", alerts, time.monotonic() - started
        finally:
            await redis.aclose()

    moved, alerts, took = run_async(idle_read())

    assert (moved, alerts) == ("", [])
    assert took > 4.9  # it blocked the whole 5 s, and the socket did not time out first


def test_one_models_alerts_are_found_past_a_page_of_another_models(valkey_url: str) -> None:
    async def scenario() -> tuple[list[Alert], list[Alert], list[Alert]]:
        redis = Redis.from_url(valkey_url, decode_responses=True)
        try:
            await redis.delete(ALERT_STREAM)
            stream = AlertStream(redis, max_len=5000)
            for n in range(3):
                await stream.publish("info", f"wine {n}", kind=AlertKind.TRAINING,
                                     data={"model": "wine"})  # fmt: skip
            for n in range(1200):  # more than two pages of another model's alerts since
                await stream.publish("info", f"iris {n}", kind=AlertKind.TRAINING,
                                     data={"model": "iris"})  # fmt: skip
            await stream.publish("info", "the platform's own", kind=AlertKind.TRAINING)
            return (
                await stream.recent(2, model="wine"),
                await stream.recent(10, model="diabetes"),
                await stream.recent(2),
            )
        finally:
            await redis.aclose()

    wine, none, newest = run_async(scenario())

    assert [a.text for a in wine] == ["wine 2", "wine 1"]
    assert none == []
    assert [a.text for a in newest] == ["the platform's own", "iris 1199"]
