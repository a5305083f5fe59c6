"""The promotion gate's decisions and the words it gives (fast: no platform)."""

from __future__ import annotations

import pytest

from mlops.contracts.model_definition import Gate, Metric
from mlops.ml.promotion import ChampionScore, decide


@pytest.mark.parametrize(
    ("accuracy", "champion", "tolerance", "promoted", "reason"),
    [
        (0.85, None, 0, False, "accuracy 0.850 < threshold 0.9"),
        (0.933, None, 0, True, "accuracy 0.933 ≥ threshold 0.9; no champion yet"),
        (
            0.9,
            ChampionScore("1", 0.933),
            0,
            False,
            "accuracy 0.900 < champion version 1's 0.933 on the same 30 test rows",
        ),
        (
            0.933,
            ChampionScore("1", 0.933),
            0,
            True,
            "accuracy 0.933 ≥ threshold 0.9 and ≥ champion version 1's 0.933 "
            "on the same 30 test rows",
        ),
        (
            0.92,
            ChampionScore("4", 0.933),
            0.02,
            True,
            "accuracy 0.920 ≥ threshold 0.9 and ≥ champion version 4's 0.933 "
            "on the same 30 test rows (tolerance 0.02)",
        ),
        (
            0.95,
            ChampionScore("2", None, "other features: a, b"),
            0,
            True,
            "accuracy 0.950 ≥ threshold 0.9; champion version 2 could not be scored on these "
            "rows (other features: a, b), so the threshold alone decided",
        ),
        (0.85, ChampionScore("2", 0.5), 0, False, "accuracy 0.850 < threshold 0.9"),
        (
            0.95,
            ChampionScore("7", None, "it has no seal", fail_closed=True),
            0,
            False,
            "accuracy 0.950 ≥ threshold 0.9, but champion version 7 could not be scored "
            "(it has no seal), so nothing is promoted",
        ),
        (
            0.95,
            ChampionScore(None, None, "MLflow: 503", fail_closed=True),
            0,
            False,
            "accuracy 0.950 ≥ threshold 0.9, but the champion could not be scored "
            "(MLflow: 503), so nothing is promoted",
        ),
    ],
)
def test_the_gate_needs_the_threshold_and_no_worse_than_the_champion(
    accuracy, champion, tolerance, promoted, reason
) -> None:
    gate = Gate(metric=Metric.ACCURACY, threshold=0.9, tolerance=tolerance)

    decision = decide(accuracy, gate=gate, champion=champion, test_rows=30)

    assert (decision.promoted, decision.reason) == (promoted, reason)


@pytest.mark.parametrize(
    ("rmse", "champion", "promoted", "reason"),
    [
        (70.0, None, False, "rmse 70 > threshold 60"),
        (52.1, None, True, "rmse 52.1 ≤ threshold 60; no champion yet"),
        (
            52.1,
            ChampionScore("3", 53.4),
            True,
            "rmse 52.1 ≤ threshold 60 and ≤ champion version 3's 53.4 on the same 89 test rows "
            "(tolerance 2)",
        ),
        (
            55.0,
            ChampionScore("3", 53.4),
            True,  # within the tolerance of 2
            "rmse 55 ≤ threshold 60 and ≤ champion version 3's 53.4 on the same 89 test "
            "rows (tolerance 2)",
        ),
        (
            56.0,
            ChampionScore("3", 53.4),
            False,
            "rmse 56 > champion version 3's 53.4 on the same 89 test rows (tolerance 2)",
        ),
    ],
)
def test_a_lower_is_better_metric_is_gated_the_other_way(rmse, champion, promoted, reason) -> None:
    gate = Gate(metric=Metric.RMSE, threshold=60, tolerance=2)

    decision = decide(rmse, gate=gate, champion=champion, test_rows=89)

    assert (decision.promoted, decision.reason) == (promoted, reason)


def test_a_gate_without_threshold_compares_with_the_champion_only() -> None:
    gate = Gate(metric=Metric.R2)

    first = decide(-0.5, gate=gate, champion=None, test_rows=10)
    worse = decide(0.3, gate=gate, champion=ChampionScore("1", 0.4), test_rows=10)

    assert (first.promoted, first.reason) == (True, "r2 -0.500; no champion yet")
    assert not worse.promoted


def test_a_training_asked_not_to_promote_holds_a_passing_version_for_a_rollout() -> None:
    gate = Gate(metric=Metric.ACCURACY, threshold=0.9)
    passing = decide(0.95, gate=gate, champion=None, test_rows=30)
    failing = decide(0.8, gate=gate, champion=None, test_rows=30)

    held = passing.held_for_rollout()

    assert (held.promoted, held.held) == (False, True)
    assert held.reason.startswith(passing.reason) and "canary rollout" in held.reason
    assert failing.held_for_rollout() == failing  # refused is refused, held or not
