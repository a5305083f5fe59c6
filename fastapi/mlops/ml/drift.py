"""Input drift: does live traffic still look like the training data?

Training keeps a reference profile of each feature: its decile edges and a sample of
its values. A check compares the rows a model has recently served with that profile,
per feature, two ways: the population stability index (PSI) over the reference's
decile bins, and the two-sample Kolmogorov–Smirnov test against the reference sample.
A feature drifts when both agree: its PSI reaches the threshold and the KS test
rejects "same distribution" at `alpha`. Asking both keeps false alarms rare on
in-distribution traffic, where either alone now and then strays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

BINS = 10
REFERENCE_SAMPLE = 1000
_EPSILON = 1e-4  # instead of an empty bin's 0, which PSI's logarithm cannot take


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    drifting: bool


def profile(features: pd.DataFrame, *, seed: int = 0) -> dict[str, Any]:
    """The reference profile of the training features (JSON-ready)."""
    sample = features.sample(n=min(len(features), REFERENCE_SAMPLE), random_state=seed)
    columns = {}
    for name in features.columns:
        values = features[name].to_numpy(dtype=np.float64)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
        columns[str(name)] = {
            "edges": edges.tolist(),
            "expected": _fractions(values, edges).tolist(),
            "sample": sample[name].astype(float).tolist(),
        }
    return {"features": list(map(str, features.columns)), "columns": columns}


def _fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(expected, _EPSILON, None)
    actual = np.clip(actual, _EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def compare(
    reference: dict[str, Any], rows: np.ndarray, *, threshold: float, alpha: float
) -> list[FeatureDrift]:
    """Each feature of `rows` (served inputs, in the profile's column order) against the
    reference."""
    results = []
    for index, name in enumerate(reference["features"]):
        column = reference["columns"][name]
        values = rows[:, index]
        edges = np.asarray(column["edges"])
        score = psi(np.asarray(column["expected"]), _fractions(values, edges))
        test = ks_2samp(np.asarray(column["sample"]), values)
        statistic, pvalue = float(test.statistic), float(test.pvalue)
        drifting = score >= threshold and pvalue < alpha
        results.append(FeatureDrift(name, score, statistic, pvalue, drifting))
    return results
