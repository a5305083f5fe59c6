"""Alerts over Server-Sent Events, against the real API and Valkey."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from helpers import SseReader, run_async

from mlops.clients.redis import ALERT_STREAM, AlertStream, connect
from mlops.schemas import Alert
from mlops.settings import Settings


@pytest.fixture()
def publish(settings: Settings) -> Iterator:
    """Publish an alert into the real stream, as the training job does."""

    def _publish(text: str, level: str = "info") -> Alert:
        async def go() -> Alert:
            redis = connect(settings)
            try:
                stream = AlertStream(redis, max_len=settings.alert_history)
                return await stream.publish(level, text, kind="test")  # type: ignore[arg-type]
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
def write_junk(settings: Settings) -> Iterator:
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


def test_a_resume_replays_at_most_the_newest_alerts(start_api, settings: Settings) -> None:
    api, _ = start_api(sse_max_replay=3, redis_db=14)
    base = settings.redis_url.rsplit("/", 1)[0]
    mine = settings.model_copy(update={"redis_url": f"{base}/14"})

    async def publish_five() -> list[Alert]:
        redis = connect(mine)
        try:
            stream = AlertStream(redis, max_len=1000)
            return [await stream.publish("info", f"old {i}", kind="test") for i in range(5)]
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
