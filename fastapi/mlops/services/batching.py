"""Coalescing concurrent predictions into one Serve call.

A trip through Ray Serve's HTTP proxy costs milliseconds of CPU whatever it carries,
while predicting one more row with the compiled model costs microseconds. So requests
for the same model (champion or version) that arrive while calls are in flight wait for the next
free call and go together (up to `max_batch` rows). Nothing waits on a timer: with
no load, a request goes out at once, and under load batches form by themselves.

The calls go through aiohttp, not httpx: a loopback round trip costs about 0.2 ms with
it against 0.8 ms with httpx here, and this is the path every prediction takes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from mlops.contracts.serve import MULTIPLEX_HEADER, ServedModel, ServeErrorCode

log = logging.getLogger(__name__)

# (the served model's id, number of features): rows of one key always fit in one
# array, so a malformed row never fails a batch of good ones.
Key = tuple[str, int]


class TransientServeError(Exception):
    """The call failed in a way a retry may fix (connection, 5xx, redeploy)."""


@dataclass
class ServeVerdict(Exception):
    """The replica judged the request itself (unknown version, bad input, no model)."""

    code: ServeErrorCode
    detail: str

    @property
    def status(self) -> int:
        return self.code.status


@dataclass
class _Pending:
    row: list[float]
    future: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ServeBatcher:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        *,
        max_batch: int = 64,
        max_in_flight: int = 4,
        call_timeout: float = 30.0,
    ) -> None:
        self._http = http
        self._url = url
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._call_timeout = aiohttp.ClientTimeout(total=call_timeout)
        self._queues: dict[Key, list[_Pending]] = defaultdict(list)
        self._in_flight: dict[Key, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[None]] = set()

    async def predict(self, row: list[float], served: ServedModel) -> dict[str, Any]:
        """One row's reply: {version, predictor, task, classes, outputs: [...]}
        (contracts.serve)."""
        key = (served.model_id, len(row))
        pending = _Pending(row)
        self._queues[key].append(pending)
        if self._in_flight[key] < self._max_in_flight:
            self._in_flight[key] += 1
            task = asyncio.create_task(self._drain(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # A caller that gives up (its SLA) cancels its future; the batch skips it.
        return await pending.future

    async def _drain(self, key: Key) -> None:
        try:
            while queue := self._queues[key]:
                batch = queue[: self._max_batch]
                del queue[: self._max_batch]
                await self._send(key, batch)
        finally:
            self._in_flight[key] -= 1
            if not self._queues[key]:
                self._queues.pop(key, None)

    async def _send(self, key: Key, batch: list[_Pending]) -> None:
        outcome: dict[str, Any] | Exception
        try:
            async with self._http.post(
                self._url,
                json={"rows": [p.row for p in batch]},
                headers={MULTIPLEX_HEADER: key[0]},
                timeout=self._call_timeout,
            ) as response:
                outcome = _outcome(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = TransientServeError(
                f"Ray Serve is not reachable at {self._url} ({type(exc).__name__})"
            )
        for index, pending in enumerate(batch):
            if pending.future.done():
                continue
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result({**outcome, "outputs": outcome["outputs"][index]})

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _outcome(status: int, content: bytes) -> dict[str, Any] | Exception:
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if status == 200 and isinstance(body, dict):
        return body
    if isinstance(body, dict) and (code := _error_code(body.get("error"))):
        return ServeVerdict(code, body["detail"])
    text = content[:200].decode(errors="replace")
    return TransientServeError(f"Serve answered {status}: {text}")


def _error_code(value: object) -> ServeErrorCode | None:
    """The replica's error code, or None for anything else (a proxy's own error page)."""
    if isinstance(value, str) and value in ServeErrorCode.__members__.values():
        return ServeErrorCode(value)
    return None
