"""The estimator families a model can use, per task, and their hyperparameter rules.

A family is a scikit-learn estimator class with what the platform must know about it:
which parameter sets its size (bounded by the platform), whether it grows trees without
bound unless given a depth, whether its trees can be built in parallel on Ray.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge

from mlops.contracts.model_definition import Estimator, Task

# Parameters the platform sets itself: n_jobs must stay 1 for low-latency predict in
# Serve replicas, and the others change logging or refitting, not the model.
MANAGED_PARAMETERS = {"n_jobs", "verbose", "warm_start"}

_CLASSES: dict[tuple[Task, Estimator], type] = {
    (Task.CLASSIFICATION, Estimator.RANDOM_FOREST): RandomForestClassifier,
    (Task.CLASSIFICATION, Estimator.EXTRA_TREES): ExtraTreesClassifier,
    (Task.CLASSIFICATION, Estimator.HIST_GRADIENT_BOOSTING): HistGradientBoostingClassifier,
    (Task.CLASSIFICATION, Estimator.LOGISTIC_REGRESSION): LogisticRegression,
    (Task.REGRESSION, Estimator.RANDOM_FOREST): RandomForestRegressor,
    (Task.REGRESSION, Estimator.EXTRA_TREES): ExtraTreesRegressor,
    (Task.REGRESSION, Estimator.HIST_GRADIENT_BOOSTING): HistGradientBoostingRegressor,
    (Task.REGRESSION, Estimator.RIDGE): Ridge,
}
_FORESTS = {Estimator.RANDOM_FOREST, Estimator.EXTRA_TREES}
_LINEAR = {Estimator.LOGISTIC_REGRESSION, Estimator.RIDGE}
_SIZE = {
    Estimator.RANDOM_FOREST: "n_estimators",
    Estimator.EXTRA_TREES: "n_estimators",
    Estimator.HIST_GRADIENT_BOOSTING: "max_iter",
}


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


class _Built(Protocol):
    """Anything that says how a model is built: a ModelSpec, a ModelRef."""

    @property
    def task(self) -> Task: ...
    @property
    def estimator(self) -> Estimator: ...


@dataclass(frozen=True)
class Family:
    task: Task
    estimator: Estimator

    @classmethod
    def of(cls, model: _Built) -> Family:
        return cls(model.task, model.estimator)

    @property
    def cls(self) -> type:
        return _CLASSES[(self.task, self.estimator)]

    @property
    def is_forest(self) -> bool:
        """Independent trees: a fit can spread them over tree builders (ml/tree_builders.py)."""
        return self.estimator in _FORESTS

    @property
    def is_linear(self) -> bool:
        """A linear model: its features are scaled first (trees are indifferent to scale)."""
        return self.estimator in _LINEAR

    @property
    def size_parameter(self) -> str | None:
        """The parameter that sets how much there is to fit (trees, boosting rounds)."""
        return _SIZE.get(self.estimator)

    def valid_parameters(self) -> dict[str, Any]:
        """Every parameter scikit-learn accepts, with its default."""
        return self.cls().get_params()

    def size(self, hyperparameters: dict[str, Any]) -> int:
        """Trees or rounds the fit will build (1 for a linear model)."""
        if self.size_parameter is None:
            return 1
        return int(
            hyperparameters.get(self.size_parameter, self.valid_parameters()[self.size_parameter])
        )

    def build(self, hyperparameters: dict[str, Any], *, default_max_depth: int) -> Any:
        """The estimator, n_jobs 1 where it has one. A forest not given max_depth gets
        `default_max_depth`, never scikit-learn's unbounded trees: one request must not
        grow a forest that fills the cluster's memory (boosting is bounded by its leaves)."""
        valid = self.valid_parameters()
        parameters = dict(hyperparameters)
        if self.is_forest:
            parameters = {"max_depth": default_max_depth, **parameters}
        if "n_jobs" in valid:
            parameters["n_jobs"] = 1
        return self.cls(**parameters)

    def check(
        self, hyperparameters: dict[str, Any], *, max_size: int, max_depth_limit: int
    ) -> dict[str, Any]:
        """Check parameters against the family's class and the platform's bounds.

        Raises HyperparameterError naming the first offending key. Cross-parameter rules
        that scikit-learn only checks in fit (oob_score without bootstrap, say) are caught
        by fitting a two-round model on a dozen synthetic rows, which takes milliseconds.
        """
        valid = self.valid_parameters()
        for key, value in hyperparameters.items():
            _check_known(key, value, valid)
        size = self.size_parameter
        if size and isinstance(hyperparameters.get(size), int) and hyperparameters[size] > max_size:
            raise HyperparameterError(size, f"{size!r} must be ≤ {max_size}")
        _check_depth(hyperparameters, max_depth_limit, unbounded_if_none=self.is_forest)
        estimator = self.cls(**hyperparameters)
        try:
            # scikit-learn's own constraint check (the one fit runs first); its message
            # names the parameter, e.g. "The 'max_depth' parameter ... must be an int ...".
            estimator._validate_params()
        except ValueError as exc:
            raise HyperparameterError(_named_key(str(exc), hyperparameters), str(exc)) from exc
        self._trial_fit(estimator, hyperparameters)
        return dict(hyperparameters)

    def _trial_fit(self, estimator: Any, hyperparameters: dict[str, Any]) -> None:
        if self.size_parameter:
            estimator.set_params(**{self.size_parameter: 2})
        # What depends on the dataset (its width, its class names) only the job can check.
        if isinstance(hyperparameters.get("max_features"), int):
            estimator.set_params(max_features=None)
        if isinstance(hyperparameters.get("class_weight"), dict):
            estimator.set_params(class_weight=None)
        random = np.random.default_rng(0)
        rows = random.normal(size=(12, 4))
        target = np.arange(12) % 3 if self.task is Task.CLASSIFICATION else random.normal(size=12)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                estimator.fit(rows, target)
        except ValueError as exc:
            raise HyperparameterError(_named_key(str(exc), hyperparameters), str(exc)) from exc


def _check_known(key: str, value: Any, valid: dict[str, Any]) -> None:
    if key in MANAGED_PARAMETERS:
        raise HyperparameterError(key, f"{key!r} is set by the platform and cannot be given")
    if key not in valid:
        raise HyperparameterError(
            key, f"unknown hyperparameter {key!r}; valid ones: {', '.join(sorted(valid))}"
        )
    if isinstance(value, float) and not np.isfinite(value):
        raise HyperparameterError(key, f"{key!r} must be a finite number")


def _check_depth(hyperparameters: dict[str, Any], limit: int, *, unbounded_if_none: bool) -> None:
    if "max_depth" not in hyperparameters:
        return
    max_depth = hyperparameters["max_depth"]
    if max_depth is None and unbounded_if_none:
        raise HyperparameterError(
            "max_depth",
            f"'max_depth' must be a whole number from 1 to {limit}: null would grow "
            "trees without bound (omit it for the platform's bound)",
        )
    if isinstance(max_depth, int) and max_depth > limit:
        raise HyperparameterError("max_depth", f"'max_depth' must be ≤ {limit}")


def _named_key(message: str, hyperparameters: dict[str, Any]) -> str:
    named = [key for key in hyperparameters if f"'{key}'" in message or key in message]
    return named[0] if named else next(iter(hyperparameters), "hyperparameters")
