"""The platform's one retry policy: exponential backoff on the error types named.

Every place that waits out a passing failure (MLflow answering 5xx while SQLite is
busy, Serve redeploying, a Redis restart) retries through `backoff`, so the shape of a
retry is written once: the first delay doubles up to a cap, and the retries stop
after a number of attempts, past a deadline, or when the caller says so. The last
error is raised as itself, never wrapped.

    async for attempt in backoff(on=(TransientError,), first=0.2, cap=1.0, attempts=3):
        with attempt:
            return await call()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    stop_never,
    wait_exponential,
)
from tenacity.stop import stop_base

log = logging.getLogger(__name__)
T = TypeVar("T")


class _StopWhen(stop_base):
    def __init__(self, condition: Callable[[], bool]) -> None:
        self._condition = condition

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._condition()


def _policy(
    on: tuple[type[BaseException], ...],
    first: float,
    cap: float,
    attempts: int | None,
    within: float | None,
    stop_when: Callable[[], bool] | None,
    what: str | None,
) -> dict[str, Any]:
    stop: stop_base = stop_never
    if attempts is not None:
        stop = stop | stop_after_attempt(attempts)
    if within is not None:
        stop = stop | stop_before_delay(within)
    if stop_when is not None:
        stop = stop | _StopWhen(stop_when)
    return {
        "retry": retry_if_exception_type(on),
        "wait": wait_exponential(multiplier=first, max=cap),
        "stop": stop,
        "before_sleep": _log_retry(what) if what else None,
        "reraise": True,
    }


def backoff(
    *,
    on: tuple[type[BaseException], ...],
    first: float,
    cap: float,
    attempts: int | None = None,
    within: float | None = None,
    stop_when: Callable[[], bool] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    what: str | None = None,
) -> AsyncRetrying:
    """Retry the errors `on`, waiting first, 2×first, 4×first … up to `cap` seconds.

    Stops after `attempts` calls, before a wait that would end past `within` seconds
    from the first call, or once `stop_when()` is true (a service stopping). `sleep`
    replaces asyncio.sleep (a background loop's interruptible pause). With `what`,
    each retry is logged as a warning naming it and the error.
    """
    policy = _policy(on, first, cap, attempts, within, stop_when, what)
    return AsyncRetrying(sleep=sleep or asyncio.sleep, **policy)


def backoff_blocking(
    *,
    on: tuple[type[BaseException], ...],
    first: float,
    cap: float,
    attempts: int | None = None,
    within: float | None = None,
    what: str | None = None,
) -> Retrying:
    """`backoff` for code without an event loop (the local platform's supervisor)."""
    return Retrying(**_policy(on, first, cap, attempts, within, None, what))


async def retried(
    call: Callable[[], Awaitable[T]],
    *,
    on: tuple[type[BaseException], ...],
    first: float,
    cap: float,
    attempts: int,
    within: float,
    what: str,
) -> T:
    """`await call()` under `backoff`, with the first call made directly: when it
    succeeds (a hot path's usual case) the policy costs nothing (tenacity's machinery
    is about 20 µs a call); only a failure pays for it, with the same waits."""
    started = time.monotonic()
    try:
        return await call()
    except on as exc:
        if attempts <= 1 or first >= within:
            raise
        log.warning("%s failed (%s); retry 1 in %.2fs", what, exc, first)
    await asyncio.sleep(first)
    async for attempt in backoff(
        on=on,
        first=min(first * 2, cap),
        cap=cap,
        attempts=attempts - 1,
        within=within - (time.monotonic() - started),
        what=what,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: backoff re-raises the last error")


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s failed (%s); retry %d in %.2fs", what, error, state.attempt_number, wait)

    return before_sleep
