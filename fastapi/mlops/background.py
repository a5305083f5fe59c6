"""The API's background loops: kept alive, watched, and stopped for sure.

A loop that raises is logged with its traceback and started again after a pause that
grows with each failure (the platform's retry policy, `mlops.retry`), so one unexpected
error never leaves the API without its scheduler or its job reconciler until a restart.
Each loop says when it completed a round (`completed_round`); `health()` reports, per
loop, whether it is running, when it last completed, how often it was restarted and
why (`/ready` shows it).

Cancelling a task is not enough on its own on Python 3.11: `asyncio.wait_for` there
drops a cancellation that lands as its inner call completes (CPython gh-86296), and
redis-py sends every command through it. A loop that lost its cancel would run on and
hold the process open at exit. So each loop also checks `running` between steps, and
`stop` cancels again until the loops have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops.retry import backoff

log = logging.getLogger(__name__)

Loop = Callable[[], Coroutine[Any, Any, None]]
_current_loop: contextvars.ContextVar[str] = contextvars.ContextVar("background_loop")


@dataclass
class LoopHealth:
    running: bool = False
    last_completed_at: datetime | None = None
    restarts: int = 0
    last_error: str | None = None


class LoopDied(Exception):
    """A background loop raised; it is restarted after a pause."""


class Background:
    """Loops that live as long as the app: `while background.running: ...`."""

    def __init__(self, *, first_pause: float = 1.0, max_pause: float = 30.0) -> None:
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._health: dict[str, LoopHealth] = {}
        self._first_pause = first_pause
        self._max_pause = max_pause

    @property
    def running(self) -> bool:
        return not self._stopping.is_set()

    def start(self, name: str, loop: Loop) -> None:
        """Run `loop()` until the app stops, starting it again each time it raises."""
        self._health[name] = LoopHealth()
        self._tasks.append(asyncio.create_task(self._keep_running(name, loop), name=name))

    async def _keep_running(self, name: str, loop: Loop) -> None:
        _current_loop.set(name)
        health = self._health[name]
        with contextlib.suppress(LoopDied):  # raised only once stopping: already logged
            async for attempt in backoff(
                on=(LoopDied,),
                first=self._first_pause,
                cap=self._max_pause,
                stop_when=lambda: not self.running,
                sleep=self.pause,
            ):
                with attempt:
                    health.running = True
                    try:
                        await loop()
                    except Exception as exc:  # restarted after the pause, whatever it was
                        health.restarts += 1
                        health.last_error = f"{type(exc).__name__}: {exc}"
                        log.exception("background loop %s died; restarting it", name)
                        raise LoopDied(name) from exc
                    finally:
                        health.running = False

    def completed_round(self) -> None:
        """Called by a loop after each round of its work."""
        if (name := _current_loop.get(None)) is not None:
            self._health[name].last_completed_at = datetime.now(UTC)

    def health(self) -> dict[str, LoopHealth]:
        """A snapshot of each loop's health, by name."""
        return {name: dataclasses.replace(health) for name, health in self._health.items()}

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
