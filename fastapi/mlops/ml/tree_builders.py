"""A forest's trees built in parallel by Ray actors kept warm between fits.

A builder is a Ray actor on a trainer node that reserves one CPU while it lives and has
scikit-learn imported. The trainer keeps its builders between fits and releases them
once they have been idle for MLOPS_TREE_BUILDERS_IDLE_SECONDS, so back-to-back fits
skip the workers' start and imports, and an idle platform holds no CPU. A job run
outside the trainer (a search's trial or refit, a job whose trainer is gone) starts
builders for its fit and releases them after it.

The fit's matrix goes into Ray's object store once, and every builder reads it there
(without a copy on its node). The trees are cut into consecutive ranges, many per
builder, handed to whichever builder is free. A builder fits the trees of
its range with the seeds a serial fit gives them: scikit-learn's warm start draws the
seeds of the trees already present before it draws new ones, so a forest that "has"
the trees before the range (placeholders) builds exactly the range's trees. The
assembled forest therefore equals a serial fit with the same random_state, whatever
the number of builders (tests/service/test_tune.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import ray
from sklearn.base import clone

from mlops.contracts.placement import on_trainer_nodes

log = logging.getLogger(__name__)

# Ranges per builder: the fit ends when its last range does, so short ranges keep the
# builders busy to the end (a range costs a call and a few milliseconds of checks).
RANGES_PER_BUILDER = 16


class TreeBuilder:
    """A Ray actor (`TreeBuilders` starts it) that fits ranges of trees."""

    def __init__(self, niceness: int) -> None:
        from mlops.ml.niceness import yield_to_serving

        yield_to_serving(niceness)

    def fit_range(self, forest: Any, x: np.ndarray, y: np.ndarray, start: int, stop: int) -> Any:
        return fit_range(forest, x, y, start, stop)


def fit_range(forest: Any, x: np.ndarray, y: np.ndarray, start: int, stop: int) -> Any:
    """`forest` (unfitted) fitted with its trees start..stop-1 only, each as a serial
    fit of the whole forest builds it."""
    part = clone(forest).set_params(n_estimators=stop, warm_start=True, n_jobs=1)
    part.estimators_ = [None] * start  # placeholders: their seeds are drawn, then skipped
    part.fit(x, y)
    part.estimators_ = part.estimators_[start:]
    return part


def tree_ranges(trees: int, pieces: int) -> list[tuple[int, int]]:
    """0..trees cut into `pieces` consecutive ranges (fewer when there are fewer trees),
    sizes differing by one at most."""
    pieces = max(1, min(pieces, trees))
    bounds = [round(i * trees / pieces) for i in range(pieces + 1)]
    return list(zip(bounds, bounds[1:], strict=False))


def assemble(parts: list[Any]) -> Any:
    """One forest of the fitted ranges' trees, in order (the first range's fitted
    attributes: every range saw the same rows)."""
    forest = parts[0]
    forest.estimators_ = [tree for part in parts for tree in part.estimators_]
    forest.set_params(n_estimators=len(forest.estimators_), warm_start=False)
    return forest


class TreeBuilders:
    """Up to as many builders as a fit is given CPUs, started when a fit needs them and
    kept until idle `idle_seconds` (0: released as the fit ends). One fit at a time:
    a second waits for the builders."""

    def __init__(self, *, idle_seconds: float, niceness: int) -> None:
        self._idle_seconds = idle_seconds
        self._niceness = niceness
        self._builders: list[Any] = []
        self._fitting = threading.Lock()  # held through a fit
        self._guard = threading.Lock()  # the builder list and the idle timer
        self._timer: threading.Timer | None = None
        self._last_fit = 0.0

    @property
    def kept(self) -> int:
        """Builders alive now (each reserves a CPU that a fit here may use)."""
        with self._guard:
            return len(self._builders)

    def fit(self, forest: Any, x: np.ndarray, y: np.ndarray, *, cpus: int) -> Any:
        """`forest` fitted on `cpus` builders."""
        with self._fitting:
            builders = self._enough(cpus)
            try:
                return _fit_on(builders, forest, x, y)
            except Exception:
                self.release()  # a builder may have died with the fit: start afresh
                raise
            finally:
                self._last_fit = time.monotonic()
                self._release_later()

    def release(self) -> None:
        """Stop every builder now (the CPUs they reserve go back to the cluster)."""
        with self._guard:
            builders, self._builders = self._builders, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for builder in builders:
            ray.kill(builder)
        if builders:
            log.info("released %d tree builder(s)", len(builders))

    def _enough(self, cpus: int) -> list[Any]:
        with self._guard:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if len(self._builders) < cpus:
                builder = ray.remote(TreeBuilder).options(num_cpus=1, resources=on_trainer_nodes())
                while len(self._builders) < cpus:
                    self._builders.append(builder.remote(self._niceness))
            return self._builders[:cpus]

    def _release_later(self) -> None:
        if self._idle_seconds <= 0:
            self.release()
            return
        with self._guard:
            if not self._builders:  # released already (a failed fit): nothing to wait for
                return
            self._timer = threading.Timer(self._idle_seconds, self._release_if_idle)
            self._timer.daemon = True
            self._timer.start()

    def _release_if_idle(self) -> None:
        if self._fitting.acquire(blocking=False):  # else a fit runs: it rearms the timer
            try:
                if time.monotonic() - self._last_fit >= self._idle_seconds:
                    self.release()
            finally:
                self._fitting.release()


def _fit_on(builders: list[Any], forest: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """The ranges handed to whichever builder is free, the matrix shared through the
    object store."""
    from ray.util import ActorPool

    x_ref, y_ref = ray.put(x), ray.put(y)
    ranges = tree_ranges(forest.get_params()["n_estimators"], len(builders) * RANGES_PER_BUILDER)
    pool = ActorPool(builders)
    parts = pool.map(lambda b, r: b.fit_range.remote(forest, x_ref, y_ref, *r), ranges)
    return assemble(list(parts))
