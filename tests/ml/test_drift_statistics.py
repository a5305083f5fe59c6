"""The drift statistics on data whose truth is known (fast: no platform)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.ml import drift


def _data(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    means, scales = np.array([0.0, 5.0, -2.0, 10.0]), np.array([1.0, 2.0, 0.5, 3.0])
    train = pd.DataFrame(rng.normal(means, scales, size=(1600, 4)), columns=list("abcd"))
    held_out = rng.normal(means, scales, size=(400, 4))
    return train, held_out


def test_in_distribution_traffic_raises_no_false_alarm() -> None:
    train, held_out = _data(0)
    reference = drift.profile(train)
    rng = np.random.default_rng(1)

    alarms = sum(
        any(
            f.drifting
            for f in drift.compare(
                reference, held_out[rng.integers(0, 400, 500)], threshold=0.2, alpha=0.01
            )
        )
        for _ in range(200)
    )

    assert alarms == 0


def test_a_feature_moved_by_two_standard_deviations_is_the_only_one_flagged() -> None:
    train, held_out = _data(2)
    reference = drift.profile(train)
    served = held_out[np.random.default_rng(3).integers(0, 400, 500)].copy()
    served[:, 2] += 2 * 0.5

    scores = drift.compare(reference, served, threshold=0.2, alpha=0.01)

    assert [f.feature for f in scores if f.drifting] == ["c"]
    moved = next(f for f in scores if f.feature == "c")
    assert moved.psi > 1 and moved.ks_pvalue < 1e-10


def test_the_profile_is_plain_json_with_deciles_and_a_bounded_sample() -> None:
    train, _ = _data(4)

    reference = drift.profile(train)

    assert reference["features"] == ["a", "b", "c", "d"]
    column = reference["columns"]["a"]
    assert len(column["edges"]) == 9 and sum(column["expected"]) == pytest.approx(1.0)
    assert len(column["sample"]) == drift.REFERENCE_SAMPLE


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    even = np.full(10, 0.1)

    assert drift.psi(even, even) == 0
    assert drift.psi(even, np.array([0.5] + [0.5 / 9] * 9)) > drift.psi(
        even, np.array([0.2] + [0.8 / 9] * 9)
    )
