"""The model: one scikit-learn Pipeline around the model's estimator family, its fit (in
parallel on the Ray cluster when the family and the work are worth it) and its
evaluation by the model's task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from mlops.contracts.placement import on_trainer_nodes
from mlops.ml.estimators import Family


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


def fit(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, *, cpus: int) -> None:
    """Fit the pipeline; with `cpus` > 1 (a forest: `fit_cpus`) its trees are built by
    that many Ray workers (joblib's `ray` backend) on the cluster's trainer nodes, never
    beside the replicas.

    scikit-learn draws every tree's seed before it dispatches the trees, so the fitted
    forest is the one a serial fit with the same random_state gives. The pipeline goes
    back to `n_jobs=1` either way: replicas predict one request per thread.
    """
    forest = final_step(pipeline)
    if cpus <= 1:
        pipeline.fit(x, y)
        return
    import joblib
    from ray.util.joblib import register_ray

    register_ray()
    forest.set_params(n_jobs=cpus)
    try:
        placed = {"resources": on_trainer_nodes()}
        with joblib.parallel_backend("ray", n_jobs=cpus, ray_remote_args=placed):
            pipeline.fit(x, y)
    finally:
        forest.set_params(n_jobs=1)


def fit_cpus(
    family: Family, *, rows: int, trees: int, free_cpus: float, cap: int, min_work: int
) -> int:
    """How many CPUs a fit gets: one unless the family is a forest; else the cluster's
    free ones up to `cap`, and one when the work (rows × trees) is below `min_work`, where
    spreading it costs more than it saves (a pool of Ray workers takes about a second to
    start; iris fits in 0.1 s)."""
    if not family.is_forest or rows * trees < min_work:
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
