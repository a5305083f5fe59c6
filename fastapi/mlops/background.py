"""The API's background loops, and stopping them for sure.

Cancelling a task is not enough on its own on Python 3.11: `asyncio.wait_for` there
drops a cancellation that lands as its inner call completes (CPython gh-86296), and
redis-py sends every command through it. A loop that lost its cancel would run on and
hold the process open at exit. So each loop also checks `running` between steps, and
`stop` cancels again until the loops have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Background:
    """Loops that live as long as the app: `while background.running: ...`."""

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        return not self._stopping.is_set()

    def start(self, loop: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(loop, name=name))

    async def pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if stopping begins."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def pause_until(self, event: asyncio.Event, seconds: float) -> None:
        """Wait `seconds`, or less if `event` is set or stopping begins."""
        waiters = [
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def stop(self, timeout: float = 5.0) -> None:
        """End every loop, cancelling until each has ended; for at most `timeout`.

        A loop still running then is logged with the await it is stuck in, and left.
        """
        self._stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {task for task in self._tasks if not task.done()}
        while pending and loop.time() < deadline:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=min(0.05, deadline - loop.time()))
        for task in pending:
            where = "\n".join(awaiting(task.get_coro()))
            log.error("%s did not stop in %gs; it awaits:\n%s", task.get_name(), timeout, where)


def awaiting(awaitable: object) -> list[str]:
    """The chain of awaits a suspended coroutine is in, outermost first."""
    chain = []
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            chain.append(f"  {awaitable!r}")
            break
        chain.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return chain
