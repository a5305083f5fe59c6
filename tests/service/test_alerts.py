"""Alerts over Server-Sent Events, against the real API and Valkey."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from helpers import SseReader, run_async

from mlops.clients.redis import AlertStream, connect
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

    received = [reader.next("alert") for reader in readers]
    assert [event.id for event in received] == [sent.id, sent.id]
    assert all(event.data["text"] == "both of you" for event in received)
    assert all(event.data["level"] == "warning" for event in received)


def test_reconnecting_with_last_event_id_replays_what_was_missed(api_url, publish, readers) -> None:
    first = publish("seen")
    missed = [publish("missed 1"), publish("missed 2")]

    readers.append(SseReader(f"{api_url}/webhook", headers={"Last-Event-ID": first.id}))

    replayed = [readers[0].next("alert"), readers[0].next("alert")]
    assert [event.id for event in replayed] == [alert.id for alert in missed]
    live = publish("live")
    assert readers[0].next("alert").id == live.id


def test_ready_event_carries_the_position_to_resume_from(api_url, publish, readers) -> None:
    readers.append(SseReader(f"{api_url}/webhook"))
    cursor = readers[0].next("ready").id
    readers[0].close()
    while_away = publish("while nobody listened")

    readers.append(SseReader(f"{api_url}/webhook", headers={"Last-Event-ID": cursor}))

    assert readers[1].next("alert").id == while_away.id


def test_invalid_last_event_id_is_422(api: httpx.Client) -> None:
    response = api.get("/webhook", headers={"Last-Event-ID": "yesterday"})

    assert response.status_code == 422
    assert "yesterday" in response.json()["detail"]


def test_recent_alerts_are_newest_first(api: httpx.Client, publish) -> None:
    older, newer = publish("older"), publish("newer")

    alerts = api.get("/alerts", params={"limit": 2}).json()["alerts"]

    assert [a["id"] for a in alerts] == [newer.id, older.id]
