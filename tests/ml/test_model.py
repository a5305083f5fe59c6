"""The default model's pipeline (a random forest classifier): validation rules, held-out
accuracy, determinism, safe loading."""

from __future__ import annotations

import pytest
import skops.io as sio

from mlops.contracts.model_definition import Estimator, Task
from mlops.ml import data, model, provenance
from mlops.ml.estimators import Family, HyperparameterError

LIMITS = {"max_size": 500, "max_depth_limit": 64}
FOREST = Family(Task.CLASSIFICATION, Estimator.RANDOM_FOREST)
CLASSIFICATION = Task.CLASSIFICATION


def _iris_split() -> model.Split:
    features, labels = data.split_features(data.iris_frame(), data.IRIS_TARGET)
    return model.split(features, labels, task=CLASSIFICATION, test_size=0.2, seed=42)


def test_valid_hyperparameters_pass_unchanged() -> None:
    given = {"n_estimators": 50, "max_depth": 4, "criterion": "entropy", "random_state": 1}

    assert FOREST.check(given, **LIMITS) == given


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"n_estimators": 0}, "n_estimators"),
        ({"n_estimators": 501}, "n_estimators"),
        ({"max_depth": 65}, "max_depth"),
        ({"max_depth": None}, "max_depth"),  # unbounded trees: refused, not the default
        ({"max_features": "most"}, "max_features"),
        ({"min_samples_split": float("nan")}, "min_samples_split"),
        ({"warm_start": True}, "warm_start"),
        # A rule between two parameters may name either of them.
        ({"max_samples": 0.5, "bootstrap": False}, {"max_samples", "bootstrap"}),
    ],
)
def test_invalid_hyperparameters_name_the_offending_key(given: dict, key: str | set) -> None:
    with pytest.raises(HyperparameterError) as raised:
        FOREST.check(given, **LIMITS)

    assert raised.value.key in ({key} if isinstance(key, str) else key)


def test_pipeline_beats_the_accuracy_floor_on_held_out_iris() -> None:
    parts = _iris_split()
    pipeline = model.build_pipeline(FOREST, {"random_state": 0}, default_max_depth=64).fit(
        parts.x_train, parts.y_train
    )

    scores = model.evaluate(pipeline, parts.x_test, parts.y_test, CLASSIFICATION)

    assert scores["accuracy"] >= 0.9
    assert scores["f1_macro"] >= 0.9


def test_same_seed_gives_the_same_predictions() -> None:
    parts = _iris_split()

    first = model.build_pipeline(FOREST, {"random_state": 7}, default_max_depth=64).fit(
        parts.x_train, parts.y_train
    )
    second = model.build_pipeline(FOREST, {"random_state": 7}, default_max_depth=64).fit(
        parts.x_train, parts.y_train
    )

    assert list(first.predict(parts.x_test)) == list(second.predict(parts.x_test))


def test_pipeline_scales_inside_so_raw_rows_predict_correctly() -> None:
    parts = _iris_split()
    pipeline = model.build_pipeline(FOREST, {"random_state": 0}, default_max_depth=64).fit(
        parts.x_train, parts.y_train
    )

    setosa = parts.x_test[parts.y_test == "Setosa"].head(1)

    assert pipeline.predict(setosa)[0] == "Setosa"


def test_a_forest_needs_exactly_the_forest_trusted_types() -> None:
    parts = _iris_split()
    pipeline = model.build_pipeline(FOREST, {"n_estimators": 3}, default_max_depth=64).fit(
        parts.x_train, parts.y_train
    )

    untrusted = sio.get_untrusted_types(data=sio.dumps(pipeline))

    assert sorted(untrusted) == sorted(provenance.FOREST_TRUSTED_TYPES)


def test_an_omitted_max_depth_is_bounded_and_a_given_one_kept() -> None:
    omitted = model.build_pipeline(FOREST, {}, default_max_depth=12)
    given = model.build_pipeline(FOREST, {"max_depth": 3}, default_max_depth=12)

    assert omitted.named_steps["estimator"].max_depth == 12
    assert given.named_steps["estimator"].max_depth == 3


def test_missing_feature_values_are_filled_with_the_training_median() -> None:
    parts = _iris_split()
    x_train = parts.x_train.copy()
    x_train.iloc[::5, 2] = float("nan")
    pipeline = model.build_pipeline(
        FOREST, {"n_estimators": 3, "random_state": 0}, default_max_depth=8
    )
    pipeline.fit(x_train, parts.y_train)
    row = parts.x_test.head(1).copy()
    row.iloc[0, 2] = float("nan")
    filled = row.copy()
    filled.iloc[0, 2] = x_train.iloc[:, 2].median()

    assert (pipeline.predict_proba(row) == pipeline.predict_proba(filled)).all()


@pytest.mark.parametrize(
    ("rows", "trees", "free", "cap", "expected"),
    [
        (120, 100, 4, 8, 1),  # iris: not worth a pool of workers
        (200_000, 300, 2, 8, 2),  # what the cluster has free
        (200_000, 300, 16, 8, 8),  # within the cap
        (1_000_000, 3, 16, 8, 3),  # never more workers than trees
        (200_000, 300, 0.5, 8, 1),
    ],
)
def test_a_fit_takes_the_free_cpus_within_the_cap_when_it_is_worth_it(
    rows: int, trees: int, free: float, cap: int, expected: int
) -> None:
    cpus = model.fit_cpus(
        FOREST, rows=rows, trees=trees, free_cpus=free, cap=cap, min_work=2_000_000
    )

    assert cpus == expected


@pytest.mark.parametrize(
    "hyperparameters",
    [{"max_features": 10}, {"class_weight": {"Setosa": 2.0}}],
)
def test_what_depends_on_the_dataset_is_left_to_the_job(hyperparameters: dict) -> None:
    """A 13-feature dataset may take max_features=10; iris names its classes."""
    checked = FOREST.check(hyperparameters, **LIMITS)

    assert checked == hyperparameters
