"""Server-Sent Events: writing frames, and reading a stream as a browser's EventSource does.

`frame` is the one writer: the API's alert feed encodes each alert once with it and
sends the same bytes to every client. The parser is the one reader of /webhook on the
client side: the CLI's `alerts --follow`, the tests and the benchmarks all read the
stream through it. Both follow the HTML standard's rules: `data` lines join with
newlines, a blank line ends an event, an event without an `event:` field is a
`message`, comment lines (`:`, the server's pings) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

PING = b": ping\n\n"  # a comment: keeps proxies from closing an idle stream, never an event


def frame(data: str, *, event_id: str = "", event: str = "", retry_ms: int | None = None) -> bytes:
    """One event on the wire. Without `event` it is a `message`, which `onmessage` gets."""
    lines = [f"event: {event}"] if event else []
    if event_id:
        lines.append(f"id: {event_id}")
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    data_lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines.extend(f"data: {line}" for line in data_lines)
    return ("\n".join(lines) + "\n\n").encode()


@dataclass(frozen=True)
class SseEvent:
    event: str
    id: str
    data: str
    retry_ms: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SseParser:
    """Feed it lines; it returns each event when its blank line arrives."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._event = ""
        self._id = ""
        self._data: list[str] = []
        self._retry: int | None = None

    def feed(self, line: str) -> SseEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._reset()
                return None
            event = SseEvent(self._event or "message", self._id, "\n".join(self._data), self._retry)
            self._reset()
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def events(lines: Iterable[str]) -> Iterator[SseEvent]:
    parser = SseParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event


async def aevents(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    parser = SseParser()
    async for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
