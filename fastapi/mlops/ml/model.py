"""The model: one scikit-learn Pipeline around the model's estimator family, its fit (in
parallel on the Ray cluster when the family and the work are worth it) and its
evaluation by the model's task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlops.contracts.model_definition import Task
from mlops.ml.estimators import Family

if TYPE_CHECKING:
    from mlops.ml.tree_builders import TreeBuilders


def pip_requirements() -> list[str]:
    """What loading the pipeline needs, pinned to the versions that trained it."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "scikit-learn", "skops", "pandas")]


def build_pipeline(
    family: Family, hyperparameters: dict[str, Any], *, default_max_depth: int
) -> Pipeline:
    """Imputation, scaling (linear models only) and the estimator in one object, so
    serving applies the same steps. Missing feature values are filled with the training
    median (data.py's policy); the estimator's bounds are its family's (`Family.build`).

    Trees get no scaler: they are indifferent to scale, and without one a tree sees the
    same float32 values in scikit-learn and in the compiled form, so a regressor's
    compiled predictions match (a scaler computed in float64 there and float32 here
    moves values across split thresholds)."""
    steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if family.is_linear:
        steps.append(("scale", StandardScaler()))
    estimator = family.build(hyperparameters, default_max_depth=default_max_depth)
    return Pipeline([*steps, ("estimator", estimator)])


def final_step(pipeline: Pipeline) -> Any:
    """The estimator (the step is named "forest" in versions registered before families)."""
    return pipeline.steps[-1][1]


def fit(
    pipeline: Pipeline,
    x: pd.DataFrame,
    y: pd.Series,
    *,
    cpus: int,
    builders: TreeBuilders | None = None,
) -> None:
    """Fit the pipeline; with `cpus` > 1 (a forest: `fit_cpus`) its trees are built by
    that many of `builders` (Ray actors on the cluster's trainer nodes, never beside the
    replicas: ml/tree_builders.py), and the forest is the one a serial fit with the
    same random_state gives. The steps before the forest are fitted here, once.
    """
    if cpus <= 1:
        pipeline.fit(x, y)
        return
    if builders is None:
        raise ValueError("a fit on more than one CPU needs tree builders")
    name, forest = pipeline.steps[-1]
    rows = np.asarray(pipeline[:-1].fit_transform(x, y), dtype=np.float32)
    fitted = builders.fit(forest, rows, y.to_numpy(), cpus=cpus)
    pipeline.set_params(**{name: fitted})


def fit_cpus(
    family: Family,
    *,
    rows: int,
    trees: int,
    free_cpus: float,
    cap: int,
    min_work: int,
    out_of_bag: bool = False,
) -> int:
    """How many CPUs a fit gets: one unless the family is a forest; else the cluster's
    free ones up to `cap`, and one when the work (rows × trees) is below `min_work`, where
    spreading it costs more than it saves (starting builders takes a second or more;
    iris fits in 0.1 s). A forest that scores its out-of-bag rows is fitted whole: a
    range of its trees would score its own trees only."""
    if not family.is_forest or out_of_bag or rows * trees < min_work:
        return 1
    return max(1, min(int(free_cpus), cap, trees))


@dataclass(frozen=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


def split(
    features: pd.DataFrame, labels: pd.Series, *, task: Task, test_size: float, seed: int
) -> Split:
    """Train and held-out rows; for classification every class in both (stratified)."""
    stratify = labels if task is Task.CLASSIFICATION else None
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=test_size, random_state=seed, stratify=stratify
    )
    return Split(x_train, x_test, y_train, y_test)


def evaluate(
    pipeline: Pipeline, x_test: pd.DataFrame, y_test: pd.Series, task: Task
) -> dict[str, float]:
    """Every metric of the task (contracts.model_definition.METRICS) on held-out rows."""
    predicted = pipeline.predict(x_test)
    if task is Task.CLASSIFICATION:
        return {
            "accuracy": float(accuracy_score(y_test, predicted)),
            "f1_macro": float(f1_score(y_test, predicted, average="macro")),
        }
    return {
        "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
        "mae": float(mean_absolute_error(y_test, predicted)),
        "r2": float(r2_score(y_test, predicted)),
    }
