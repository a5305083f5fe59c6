"""The model: one scikit-learn Pipeline, its hyperparameter rules, its fit (in parallel
on the Ray cluster when the work is worth it) and its evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlops.contracts.placement import on_trainer_nodes

# Parameters the platform sets itself: n_jobs must stay 1 for low-latency predict in
# Serve replicas, and the others change logging or refitting, not the model.
MANAGED_PARAMETERS = {"n_jobs", "verbose", "warm_start"}


def pip_requirements() -> list[str]:
    """What loading the pipeline needs, pinned to the versions that trained it."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "scikit-learn", "skops", "pandas")]


class InvalidField(ValueError):
    """A request field the platform cannot accept; `loc` is its path in the body."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message

    def within(self, *prefix: str) -> InvalidField:
        """The same problem, in a field nested under `prefix`."""
        return InvalidField((*prefix, *self.loc), self.message)


class HyperparameterError(InvalidField):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(("hyperparameters", key), message)
        self.key = key


def validate_hyperparameters(
    hyperparameters: dict[str, Any], *, max_n_estimators: int, max_depth_limit: int
) -> dict[str, Any]:
    """Check parameters against RandomForestClassifier and the platform's bounds.

    Raises HyperparameterError naming the first offending key. Cross-parameter rules
    that scikit-learn only checks in fit (oob_score without bootstrap, say) are caught
    by fitting a two-tree forest on a dozen synthetic rows, which takes milliseconds.
    """
    valid = RandomForestClassifier().get_params()
    for key, value in hyperparameters.items():
        if key in MANAGED_PARAMETERS:
            raise HyperparameterError(key, f"{key!r} is set by the platform and cannot be given")
        if key not in valid:
            raise HyperparameterError(
                key, f"unknown hyperparameter {key!r}; valid ones: {', '.join(sorted(valid))}"
            )
        if isinstance(value, float) and not np.isfinite(value):
            raise HyperparameterError(key, f"{key!r} must be a finite number")
    n_estimators = hyperparameters.get("n_estimators", valid["n_estimators"])
    if isinstance(n_estimators, int) and n_estimators > max_n_estimators:
        raise HyperparameterError("n_estimators", f"'n_estimators' must be ≤ {max_n_estimators}")
    max_depth = hyperparameters.get("max_depth")
    if "max_depth" in hyperparameters and max_depth is None:
        raise HyperparameterError(
            "max_depth",
            f"'max_depth' must be a whole number from 1 to {max_depth_limit}: null would grow "
            "trees without bound (omit it for the platform's bound)",
        )
    if isinstance(max_depth, int) and max_depth > max_depth_limit:
        raise HyperparameterError("max_depth", f"'max_depth' must be ≤ {max_depth_limit}")

    estimator = RandomForestClassifier(**hyperparameters)
    try:
        # scikit-learn's own constraint check (the one fit runs first); its message names
        # the parameter, e.g. "The 'max_depth' parameter ... must be an int ...".
        estimator._validate_params()
    except ValueError as exc:
        raise HyperparameterError(_named_key(str(exc), hyperparameters), str(exc)) from exc
    trial = estimator.set_params(n_estimators=2)
    # What depends on the dataset (its width, its class names) only the job can check.
    if isinstance(hyperparameters.get("max_features"), int):
        trial.set_params(max_features=None)
    if isinstance(hyperparameters.get("class_weight"), dict):
        trial.set_params(class_weight=None)
    rows = np.random.default_rng(0).normal(size=(12, 4))
    try:
        trial.fit(rows, np.arange(12) % 3)
    except ValueError as exc:
        raise HyperparameterError(_named_key(str(exc), hyperparameters), str(exc)) from exc
    return dict(hyperparameters)


def _named_key(message: str, hyperparameters: dict[str, Any]) -> str:
    named = [key for key in hyperparameters if f"'{key}'" in message or key in message]
    return named[0] if named else next(iter(hyperparameters), "hyperparameters")


def build_pipeline(hyperparameters: dict[str, Any], *, default_max_depth: int) -> Pipeline:
    """Imputation, scaling and the forest in one object, so serving applies the same steps.

    Missing feature values are filled with the training median (data.py's policy). A
    request that omits max_depth gets `default_max_depth`, never scikit-learn's
    unbounded trees: one request must not grow a forest that fills the cluster's memory.
    """
    forest = RandomForestClassifier(**{"max_depth": default_max_depth, **hyperparameters}, n_jobs=1)
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("forest", forest),
        ]
    )


def fit(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, *, cpus: int) -> None:
    """Fit the pipeline; with `cpus` > 1 the forest's trees are built by that many Ray
    workers (joblib's `ray` backend) on the cluster's trainer nodes, never beside the
    replicas.

    scikit-learn draws every tree's seed before it dispatches the trees, so the fitted
    forest is the one a serial fit with the same random_state gives. The pipeline goes
    back to `n_jobs=1` either way: replicas predict one request per thread.
    """
    forest = pipeline.named_steps["forest"]
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


def fit_cpus(*, rows: int, trees: int, free_cpus: float, cap: int, min_work: int) -> int:
    """How many CPUs a fit gets: the cluster's free ones up to `cap`, and one when the
    work (rows × trees) is below `min_work`, where spreading it costs more than it saves
    (a pool of Ray workers takes about a second to start; iris fits in 0.1 s)."""
    if rows * trees < min_work:
        return 1
    return max(1, min(int(free_cpus), cap, trees))


@dataclass(frozen=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


def split(features: pd.DataFrame, labels: pd.Series, *, test_size: float, seed: int) -> Split:
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    return Split(x_train, x_test, y_train, y_test)


def evaluate(pipeline: Pipeline, x_test: pd.DataFrame, y_test: pd.Series) -> dict[str, float]:
    predicted = pipeline.predict(x_test)
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1_macro": float(f1_score(y_test, predicted, average="macro")),
    }
