"""Reading a Server-Sent Events stream, as a browser's EventSource does.

The one parser of /webhook on the client side: the CLI's `alerts --follow`, the tests
and the benchmarks all read the stream through it. It follows the HTML standard's
rules: `data` lines join with newlines, a blank line ends an event, an event without
an `event:` field is a `message`, comment lines (`:`, the server's pings) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any


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
