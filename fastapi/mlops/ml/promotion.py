"""The promotion gate: a new version becomes the champion only on evidence.

It must clear the accuracy threshold and must not be worse than the current champion
scored on the same held-out rows in the same job. A champion that cannot be scored on
those rows (other features, other classes) leaves the threshold alone to decide, and
the reason says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlops.ml.model import evaluate
from mlops.ml.registry_tags import TAG_CLASSES, TAG_FEATURES


@dataclass(frozen=True)
class ChampionScore:
    version: str
    accuracy: float | None  # None: it could not be scored on the new rows
    why_not_scored: str | None = None


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str


def decide(
    accuracy: float,
    *,
    threshold: float,
    tolerance: float,
    champion: ChampionScore | None,
    test_rows: int,
) -> Decision:
    """Promote or not, with the reason in words (it goes on the version, the job and
    the alert)."""
    if accuracy < threshold:
        return Decision(False, f"accuracy {accuracy:.3f} < threshold {threshold:g}")
    cleared = f"accuracy {accuracy:.3f} ≥ threshold {threshold:g}"
    if champion is None:
        return Decision(True, f"{cleared}; no champion yet")
    if champion.accuracy is None:
        return Decision(
            True,
            f"{cleared}; champion version {champion.version} could not be scored on these "
            f"rows ({champion.why_not_scored}), so the threshold alone decided",
        )
    rows = f"on the same {test_rows} test rows"
    allowance = f" (tolerance {tolerance:g})" if tolerance else ""
    theirs = f"champion version {champion.version}'s {champion.accuracy:.3f}"
    if accuracy < champion.accuracy - tolerance:
        return Decision(False, f"accuracy {accuracy:.3f} < {theirs} {rows}{allowance}")
    return Decision(True, f"{cleared} and ≥ {theirs} {rows}{allowance}")


def score_champion(
    client: Any, *, model_name: str, alias: str, x_test: Any, y_test: Any
) -> ChampionScore | None:
    """The current champion's accuracy on the new held-out rows; None without one.

    `client` is an MlflowClient (the job's own connection to the tracking server).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None  # no registered model, or no version carries the alias
    version = str(found.version)
    features = json.loads(found.tags.get(TAG_FEATURES, "[]"))
    if features != list(x_test.columns):
        return ChampionScore(version, None, f"other features: {', '.join(features) or 'unknown'}")
    classes = set(json.loads(found.tags.get(TAG_CLASSES, "[]")))
    if not set(map(str, y_test.unique())) <= classes:
        return ChampionScore(version, None, f"other classes: {', '.join(sorted(classes))}")
    pipeline = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    return ChampionScore(version, evaluate(pipeline, x_test, y_test)["accuracy"])
