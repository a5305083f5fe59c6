"""A hyperparameter search's space: its checks (before anything is submitted) and its
translation to Ray Tune's distributions (inside the search job).

Each parameter of the model's estimator family maps to one distribution:
{"choice": [values]}, {"randint": [low, high]} (high excluded), {"uniform": [low, high]}
or {"loguniform": [low, high]} (low > 0). Every value a distribution can draw must be
one the estimator accepts within the platform's caps; its ends are checked for that.
"""

from __future__ import annotations

import math
from typing import Any

from mlops.ml.estimators import Family, HyperparameterError, InvalidField

KINDS = ("choice", "randint", "uniform", "loguniform")
MAX_CHOICES = 100


def validate(
    space: dict[str, Any], family: Family, *, max_size: int, max_depth_limit: int
) -> dict[str, dict[str, list[Any]]]:
    """The space, checked; InvalidField names the first offending key."""
    if not space:
        raise InvalidField(("search_space",), "name at least one hyperparameter to search")
    for key, distribution in space.items():
        loc = ("search_space", key)
        values = _values_to_check(loc, distribution)
        for value in values:
            try:
                family.check({key: value}, max_size=max_size, max_depth_limit=max_depth_limit)
            except HyperparameterError as exc:
                raise InvalidField(loc, f"{_describe(distribution)} can draw {value!r}: "
                                   f"{exc.message}") from exc  # fmt: skip
    return {key: dict(distribution) for key, distribution in space.items()}


def _values_to_check(loc: tuple[str, ...], distribution: Any) -> list[Any]:
    if not isinstance(distribution, dict) or len(distribution) != 1:
        raise InvalidField(loc, f"give one distribution: {{kind: [...]}}, kind one of {KINDS}")
    kind, args = next(iter(distribution.items()))
    if kind not in KINDS:
        raise InvalidField(loc, f"unsupported distribution {kind!r}; supported: {KINDS}")
    if not isinstance(args, list) or not args:
        raise InvalidField(loc, f"{kind!r} takes a list")
    if kind == "choice":
        if len(args) > MAX_CHOICES:
            raise InvalidField(loc, f"'choice' takes at most {MAX_CHOICES} values")
        return list(args)
    if len(args) != 2 or not all(_is_number(a) for a in args):
        raise InvalidField(loc, f"{kind!r} takes two numbers, [low, high]")
    low, high = args
    if kind == "randint":
        if not all(isinstance(a, int) for a in args) or low >= high:
            raise InvalidField(loc, "'randint' takes two integers, low < high (high excluded)")
        return [low, high - 1]
    if low >= high or (kind == "loguniform" and low <= 0):
        raise InvalidField(loc, f"{kind!r} needs low < high" + (
            " and low > 0" if kind == "loguniform" else ""))  # fmt: skip
    return [float(low), float(high)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _describe(distribution: dict[str, list[Any]]) -> str:
    kind, args = next(iter(distribution.items()))
    return f"{kind} {args}"


def to_tune(space: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """Ray Tune's form of a checked space."""
    from ray import tune

    made = {
        "choice": lambda args: tune.choice(args),
        "randint": lambda args: tune.randint(args[0], args[1]),
        "uniform": lambda args: tune.uniform(args[0], args[1]),
        "loguniform": lambda args: tune.loguniform(args[0], args[1]),
    }
    return {key: made[kind](args) for key, d in space.items() for kind, args in d.items()}
