"""The one SSE writer against the one reader: what the API sends is what clients read."""

from __future__ import annotations

import pytest

from mlops import sse


def _read(wire: bytes) -> list[sse.SseEvent]:
    return list(sse.events(wire.decode().splitlines(keepends=True)))


def test_an_alert_frame_is_an_unnamed_message_with_its_id() -> None:
    (event,) = _read(sse.frame('{"text": "hi"}', event_id="1700000000000-0"))

    assert (event.event, event.id, event.json()) == ("message", "1700000000000-0", {"text": "hi"})


def test_a_named_event_keeps_its_name_and_retry() -> None:
    (event,) = _read(sse.frame("{}", event_id="1-0", event="ready", retry_ms=2000))

    assert (event.event, event.id, event.retry_ms) == ("ready", "1-0", 2000)


@pytest.mark.parametrize("data", ["one\ntwo", "one\r\ntwo", "one\rtwo", "", "trailing\n"])
def test_line_breaks_in_data_survive_the_round_trip(data: str) -> None:
    (event,) = _read(sse.frame(data, event_id="1-0"))

    assert event.data == data.replace("\r\n", "\n").replace("\r", "\n")


def test_pings_and_frames_in_one_stream_give_only_the_events() -> None:
    wire = sse.PING + sse.frame("a", event_id="1-0") + sse.PING + sse.frame("b", event_id="2-0")

    assert [event.data for event in _read(wire)] == ["a", "b"]
