"""A version's metrics on labelled production traffic, each with a 95 % interval.

Accuracy's interval is Wilson's score interval (right near 0 and 1, where the normal
approximation is not); mae's a normal interval on the mean absolute error; f1_macro,
rmse and r2, which are not means of independent terms, a percentile bootstrap of
BOOTSTRAP_RESAMPLES resamples with a fixed seed, so a report is the same each time it is
asked for the same labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mlops.contracts.model_definition import Metric, Task

Z_95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 200
Array = NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # The interval holds p (at 0 and 1 too, where rounding would leave it out).
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def _f1_macro(truth: NDArray[np.int64], predicted: NDArray[np.int64], classes: int) -> float:
    """scikit-learn's f1_score(average="macro") over the classes that occur in either."""
    confusion = np.bincount(truth * classes + predicted, minlength=classes * classes)
    confusion = confusion.reshape(classes, classes)
    hits = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1) + confusion.sum(axis=0)
    present = support > 0
    return float(np.mean(2 * hits[present] / support[present]))


def _rmse(truth: Array, predicted: Array) -> float:
    return float(np.sqrt(np.mean((truth - predicted) ** 2)))


def _r2(truth: Array, predicted: Array) -> float:
    total = float(np.sum((truth - truth.mean()) ** 2))
    if total == 0:
        return math.nan
    return 1 - float(np.sum((truth - predicted) ** 2)) / total


def _bootstrap(statistic: Callable[[NDArray[np.int64]], float], n: int, value: float) -> Estimate:
    rng = np.random.default_rng(0)
    draws = [statistic(rng.integers(0, n, n)) for _ in range(BOOTSTRAP_RESAMPLES)]
    finite = [d for d in draws if math.isfinite(d)]
    if not finite:
        return Estimate(value, math.nan, math.nan)
    low, high = np.percentile(finite, [2.5, 97.5])
    return Estimate(value, float(low), float(high))


def classification_metrics(
    truth: Sequence[int], predicted: Sequence[int]
) -> dict[Metric, Estimate]:
    t = np.asarray(truth, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    classes = int(max(t.max(), p.max())) + 1
    hits = int(np.sum(t == p))
    low, high = wilson(hits, len(t))
    f1 = _f1_macro(t, p, classes)
    return {
        Metric.ACCURACY: Estimate(hits / len(t), low, high),
        Metric.F1_MACRO: _bootstrap(lambda i: _f1_macro(t[i], p[i], classes), len(t), f1),
    }


def regression_metrics(
    truth: Sequence[float], predicted: Sequence[float]
) -> dict[Metric, Estimate]:
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    errors = np.abs(t - p)
    mae = float(errors.mean())
    spread = Z_95 * float(errors.std(ddof=1)) / math.sqrt(len(t)) if len(t) > 1 else math.nan
    return {
        Metric.RMSE: _bootstrap(lambda i: _rmse(t[i], p[i]), len(t), _rmse(t, p)),
        Metric.MAE: Estimate(mae, max(0.0, mae - spread), mae + spread),
        Metric.R2: _bootstrap(lambda i: _r2(t[i], p[i]), len(t), _r2(t, p)),
    }


def metrics(
    task: Task, truth: Sequence[float], predicted: Sequence[float]
) -> dict[Metric, Estimate]:
    """Every metric of the task (`METRICS[task]`), on at least one labelled prediction."""
    if task is Task.CLASSIFICATION:
        return classification_metrics([int(v) for v in truth], [int(v) for v in predicted])
    return regression_metrics(truth, predicted)
