"""Every estimator family of every task: its hyperparameter rules, its bounds, a fit and
its scores; and a dataset refused when its target looks made for the other task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.datasets import load_diabetes, load_wine

from mlops.contracts.model_definition import ESTIMATORS, METRICS, Estimator, Task
from mlops.ml import data, model, provenance
from mlops.ml.estimators import Family, HyperparameterError

LIMITS = {"max_size": 500, "max_depth_limit": 64}
FAMILIES = [
    Family(task, estimator) for task, estimators in ESTIMATORS.items() for estimator in estimators
]


def _frame(task: Task) -> tuple[pd.DataFrame, str]:
    if task is Task.CLASSIFICATION:
        return load_wine(as_frame=True).frame, "target"
    return load_diabetes(as_frame=True).frame, "target"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"{f.task}-{f.estimator}")
def test_each_family_fits_and_scores_every_metric_of_its_task(family: Family) -> None:
    frame, target = _frame(family.task)
    features, labels = data.split_features(frame, target, family.task)
    parts = model.split(features, labels, task=family.task, test_size=0.2, seed=42)
    pipeline = model.build_pipeline(family, {}, default_max_depth=16)

    pipeline.fit(parts.x_train, parts.y_train)
    scores = model.evaluate(pipeline, parts.x_test, parts.y_test, family.task)

    assert set(scores) == set(METRICS[family.task])
    if family.task is Task.CLASSIFICATION:
        assert scores["accuracy"] > 0.85  # wine is easy
    else:
        assert scores["r2"] > 0.2 and scores["rmse"] > 0 and scores["mae"] > 0
    # Registered in skops format, loaded back with the platform's trusted types only.
    saved = skops.io.dumps(pipeline)
    loaded = provenance.pipeline_from_skops(saved, provenance.sha256(saved))
    np.testing.assert_array_equal(loaded.predict(parts.x_test), pipeline.predict(parts.x_test))


def test_the_trusted_types_are_exactly_what_the_families_need() -> None:
    needed: set[str] = set()
    for family in FAMILIES:
        frame, target = _frame(family.task)
        features, labels = data.split_features(frame, target, family.task)
        pipeline = model.build_pipeline(family, {}, default_max_depth=4)
        if family.size_parameter:
            pipeline.set_params(**{f"estimator__{family.size_parameter}": 3})
        pipeline.fit(features, labels)
        needed |= set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))

    assert sorted(needed) == sorted(provenance.SKOPS_TRUSTED_TYPES)


@pytest.mark.parametrize(
    ("family", "given", "key"),
    [
        (Family(Task.REGRESSION, Estimator.RIDGE), {"n_estimators": 10}, "n_estimators"),
        (Family(Task.REGRESSION, Estimator.RIDGE), {"alpha": -1.0}, "alpha"),
        (
            Family(Task.CLASSIFICATION, Estimator.HIST_GRADIENT_BOOSTING),
            {"max_iter": 501},
            "max_iter",
        ),
        (Family(Task.CLASSIFICATION, Estimator.LOGISTIC_REGRESSION), {"C": 0}, "C"),
        (Family(Task.REGRESSION, Estimator.EXTRA_TREES), {"max_depth": None}, "max_depth"),
        (Family(Task.REGRESSION, Estimator.RANDOM_FOREST), {"criterion": "gini"}, "criterion"),
        (Family(Task.CLASSIFICATION, Estimator.EXTRA_TREES), {"n_jobs": 4}, "n_jobs"),
    ],
)
def test_a_wrong_hyperparameter_is_named(family: Family, given: dict, key: str) -> None:
    with pytest.raises(HyperparameterError) as raised:
        family.check(given, **LIMITS)

    assert raised.value.key == key


def test_boosting_may_leave_max_depth_unset_and_forests_are_bounded() -> None:
    boosting = Family(Task.REGRESSION, Estimator.HIST_GRADIENT_BOOSTING)
    forest = Family(Task.REGRESSION, Estimator.EXTRA_TREES)

    assert boosting.check({"max_depth": None, "learning_rate": 0.05}, **LIMITS)
    assert boosting.build({}, default_max_depth=12).max_depth is None  # leaves bound it
    assert forest.build({}, default_max_depth=12).max_depth == 12
    assert forest.build({}, default_max_depth=12).n_jobs == 1


def test_only_forests_spread_their_fit_over_cpus() -> None:
    work: dict[str, Any] = {"rows": 200_000, "trees": 300, "free_cpus": 2, "cap": 8, "min_work": 1}
    boosting = Family(Task.CLASSIFICATION, Estimator.HIST_GRADIENT_BOOSTING)
    trees = Family(Task.CLASSIFICATION, Estimator.EXTRA_TREES)

    assert model.fit_cpus(trees, **work) == 2
    assert model.fit_cpus(boosting, **work) == 1
    # Out-of-bag scores need every tree at once: such a forest is fitted whole.
    assert model.fit_cpus(trees, **work, out_of_bag=True) == 1


@pytest.mark.parametrize(
    ("task", "column", "looks"),
    [
        (Task.REGRESSION, "variety", "classification"),  # iris: names of classes
        (Task.REGRESSION, "wine", "classification"),  # wine: three whole numbers
        (Task.CLASSIFICATION, "diabetes", "regression"),  # 214 distinct numbers
    ],
)
def test_a_target_made_for_the_other_task_is_refused_saying_which_it_looks_like(
    task: Task, column: str, looks: str
) -> None:
    frames = {
        "variety": (data.iris_frame(), "variety"),
        "wine": (load_wine(as_frame=True).frame, "target"),
        "diabetes": (load_diabetes(as_frame=True).frame, "target"),
    }
    frame, target = frames[column]

    with pytest.raises(data.DatasetError, match=f"looks like {looks}, not {task}") as refused:
        data.split_features(frame, target, task)

    assert str(refused.value).endswith(f"make the model's task {looks}, or choose another target")


def test_a_regression_target_stays_numeric_and_is_not_stratified() -> None:
    frame = pd.DataFrame({"x": np.arange(50.0), "y": np.linspace(0.5, 99.5, 50)})

    features, target = data.split_features(frame, "y", Task.REGRESSION)
    parts = model.split(features, target, task=Task.REGRESSION, test_size=0.2, seed=0)

    assert target.dtype == np.float64
    assert len(parts.x_test) == 10
