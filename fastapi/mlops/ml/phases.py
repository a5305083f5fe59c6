"""Where a job's time goes: each phase of its work timed as it runs (`contracts.jobs.
PHASES` names them), for the job record. A job stopped in Ray ends at the next phase:
none starts once it is stopped, so a stopped job registers nothing it had not already."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class JobStopped(Exception):
    """The job was stopped (`ray job stop`, the API's time limit) while it ran."""


class Phases:
    def __init__(self, stopped: Callable[[], bool] = lambda: False) -> None:
        self.seconds: dict[str, float] = {}
        self._stopped = stopped

    def stopped(self) -> bool:
        """Whether the job was stopped (its current phase then ends it early, if it can)."""
        return self._stopped()

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the block's wall time to phase `name` (a phase may be entered again);
        JobStopped instead if the job was stopped."""
        if self._stopped():
            raise JobStopped(f"stopped in Ray before its {name}")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
