"""A forest fitted as ranges of its trees is the forest a serial fit gives: the tree
builders' ranges, here in one process (tests/service/test_tune.py fits one on Ray's
builders through the platform)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from mlops.ml.tree_builders import assemble, fit_range, tree_ranges


@pytest.mark.parametrize(
    ("trees", "pieces", "expected"),
    [
        (10, 3, [(0, 3), (3, 7), (7, 10)]),
        (8, 8, [(i, i + 1) for i in range(8)]),
        (3, 8, [(0, 1), (1, 2), (2, 3)]),  # never an empty range
        (5, 1, [(0, 5)]),
    ],
)
def test_trees_are_cut_into_consecutive_ranges(
    trees: int, pieces: int, expected: list[tuple[int, int]]
) -> None:
    assert tree_ranges(trees, pieces) == expected


CLASSIFICATION = make_classification(n_samples=600, n_features=6, n_classes=3, n_informative=4)
REGRESSION = make_regression(n_samples=600, n_features=6, noise=5.0, random_state=1)


@pytest.mark.parametrize(
    ("forest", "data"),
    [
        (RandomForestClassifier(n_estimators=23, max_depth=6, random_state=5), CLASSIFICATION),
        (
            RandomForestClassifier(
                n_estimators=12, max_samples=0.5, class_weight="balanced_subsample"
            ),
            CLASSIFICATION,
        ),
        (ExtraTreesClassifier(n_estimators=17, bootstrap=True, random_state=2), CLASSIFICATION),
        (RandomForestRegressor(n_estimators=19, max_depth=5, random_state=9), REGRESSION),
        (ExtraTreesRegressor(n_estimators=11, random_state=4), REGRESSION),
    ],
    ids=["forest", "subsampled", "bagged-extra-trees", "forest-regressor", "extra-trees-regressor"],
)
def test_a_forest_assembled_from_ranges_equals_the_serial_fit(forest: Any, data: Any) -> None:
    x, y = data
    if forest.random_state is None:  # unseeded: the ranges must share one seed
        forest.set_params(random_state=np.random.randint(2**31 - 1))
    serial = forest.__class__(**forest.get_params()).fit(x, y)

    ranges = tree_ranges(forest.n_estimators, 4)
    assembled = assemble([fit_range(forest, x, y, start, stop) for start, stop in ranges])

    assert assembled.n_estimators == serial.n_estimators == len(assembled.estimators_)
    assert not assembled.warm_start
    assert assembled.n_jobs == 1  # replicas predict one request per thread
    if hasattr(serial, "predict_proba"):
        np.testing.assert_array_equal(assembled.predict_proba(x), serial.predict_proba(x))
    else:
        np.testing.assert_array_equal(assembled.predict(x), serial.predict(x))


def test_a_range_leaves_the_given_forest_unfitted() -> None:
    x, y = CLASSIFICATION
    forest = RandomForestClassifier(n_estimators=6, random_state=0)

    part = fit_range(forest, x, y, 2, 6)

    assert len(part.estimators_) == 4
    assert not hasattr(forest, "estimators_")
