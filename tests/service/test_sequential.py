"""The sequential test that decides rollouts, checked by simulation: its error rate on
A/A rollouts however often it is looked at, and its power (bench/rollouts.py prints
the same at full size)."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.contracts.model_definition import Metric
from mlops.sequential import Decision, decide, interval, label_scores, simulate

ALPHA = 0.05


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_equal_versions_are_rarely_told_apart_however_often_looked_at(share: float) -> None:
    # Looked at after every label, up to 20,000: the chance of ever deciding is what
    # alpha bounds (a fixed-sample test looked at this often would decide almost always).
    aa = simulate(0.85, 0.85, runs=4000, share=share, alpha=ALPHA, max_labels=20_000)

    assert (aa.promoted + aa.aborted) / aa.runs <= ALPHA


@pytest.mark.parametrize(("challenger", "expected"), [(0.90, "promoted"), (0.80, "aborted")])
def test_five_points_better_is_promoted_and_worse_aborted(challenger: float, expected: str) -> None:
    runs = simulate(0.85, challenger, runs=1000, share=0.1, alpha=ALPHA, max_labels=20_000)

    assert getattr(runs, expected) >= 0.95 * runs.runs


def test_a_tolerance_promotes_a_challenger_not_worse_by_more_than_it() -> None:
    strict = simulate(0.85, 0.84, runs=200, share=0.5, alpha=ALPHA, max_labels=20_000)
    tolerant = simulate(
        0.85, 0.84, runs=200, share=0.5, alpha=ALPHA, tolerance=0.05, max_labels=20_000
    )

    assert strict.promoted <= 0.05 * strict.runs
    assert tolerant.promoted >= 0.95 * tolerant.runs


def test_no_decision_before_each_arm_has_its_labels() -> None:
    rng = np.random.default_rng(3)
    arm = rng.random(400) < 0.1
    scores = np.where(arm, 1.0, 0.0)  # the challenger always right, the champion never
    found = interval(arm, scores, share=0.1, alpha=ALPHA)

    assert found is not None and found.low > 0
    assert found.challenger_labels < 100
    assert decide(found, tolerance=0.0) is Decision.CONTINUE
    assert decide(found, tolerance=0.0, min_labels=found.challenger_labels) is Decision.PROMOTE


def test_scores_rank_versions_as_their_metric_does() -> None:
    outputs, labels = np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 1.0])

    assert label_scores(Metric.ACCURACY, outputs, labels).tolist() == [1, 0, 0]
    assert label_scores(Metric.MAE, outputs, labels).tolist() == [0, -1, -3]
    assert label_scores(Metric.RMSE, outputs, labels).tolist() == [0, -1, -9]
    assert label_scores(Metric.R2, outputs, labels).tolist() == [0, -1, -9]
