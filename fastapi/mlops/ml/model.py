"""The model: one scikit-learn Pipeline, its hyperparameter rules and its evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

# Parameters the platform sets itself: n_jobs must stay 1 for low-latency predict in
# Serve replicas, and the others change logging or refitting, not the model.
MANAGED_PARAMETERS = {"n_jobs", "verbose", "warm_start"}

# Types skops must trust to load this pipeline; everything else in it is safe by default.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def pip_requirements() -> list[str]:
    """What loading the pipeline needs, pinned to the versions that trained it."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "scikit-learn", "skops", "pandas")]


class HyperparameterError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


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
    """Scaling and the forest in one object, so serving applies the same scaling.

    A request that omits max_depth gets `default_max_depth`, never scikit-learn's
    unbounded trees: one request must not grow a forest that fills the cluster's memory.
    """
    forest = RandomForestClassifier(**{"max_depth": default_max_depth, **hyperparameters}, n_jobs=1)
    return Pipeline([("scale", StandardScaler()), ("forest", forest)])


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
