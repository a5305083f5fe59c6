"""The promotion gate's decisions and the words it gives (fast: no platform)."""

from __future__ import annotations

import pytest

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
    decision = decide(accuracy, threshold=0.9, tolerance=tolerance, champion=champion, test_rows=30)

    assert (decision.promoted, decision.reason) == (promoted, reason)
