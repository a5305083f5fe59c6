"""The promotion gate: a new version becomes the champion only on evidence.

Its score on the model's gate metric must clear the gate's threshold (≥, or ≤ for rmse
and mae) and must not be worse than the current champion's, scored on the same held-out
rows in the same job, by more than the gate's tolerance. A champion trained on other
features, classes or task cannot be compared, so the threshold alone decides, and the
reason says so. Any other reason the champion cannot be scored (MLflow failing, a
champion the platform did not seal, an artifact that does not load) fails closed:
nothing is promoted.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from mlops.contracts.model_definition import Gate, ModelRef, Task
from mlops.ml import provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChampionScore:
    version: str | None  # None: which version is champion could not be read
    score: float | None  # on the gate's metric; None: it could not be scored on the new rows
    why_not_scored: str | None = None
    fail_closed: bool = False  # not scored for a reason that must stop a promotion


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    held: bool = False  # passed the gate, but kept from the alias for a rollout

    def held_for_rollout(self) -> Decision:
        """This decision, when the job was asked not to promote: a version that passed
        stays a challenger for a canary rollout to decide on."""
        if not self.promoted:
            return self
        reason = f"{self.reason}; held back from champion for a canary rollout to decide"
        return Decision(False, reason, held=True)


def shown(value: float) -> str:
    """A score in a reason: three decimals for scores near 1, else four figures."""
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.4g}"


def decide(score: float, *, gate: Gate, champion: ChampionScore | None, test_rows: int) -> Decision:
    """Promote or not, with the reason in words (it goes on the version, the job and
    the alert)."""
    metric, ours = gate.metric, f"{gate.metric} {shown(score)}"
    if gate.threshold is not None and not metric.better_or_equal(score, gate.threshold):
        worse = "<" if metric.higher_is_better else ">"
        return Decision(False, f"{ours} {worse} threshold {gate.threshold:g}")
    cleared = ours
    if gate.threshold is not None:
        cleared = f"{ours} {metric.comparison} threshold {gate.threshold:g}"
    if champion is None:
        return Decision(True, f"{cleared}; no champion yet")
    if champion.score is None and champion.fail_closed:
        which = f"champion version {champion.version}" if champion.version else "the champion"
        return Decision(
            False,
            f"{cleared}, but {which} could not be scored ({champion.why_not_scored}), "
            "so nothing is promoted",
        )
    if champion.score is None:
        return Decision(
            True,
            f"{cleared}; champion version {champion.version} could not be scored on these "
            f"rows ({champion.why_not_scored}), so the threshold alone decided",
        )
    rows = f"on the same {test_rows} test rows"
    allowance = f" (tolerance {gate.tolerance:g})" if gate.tolerance else ""
    theirs = f"champion version {champion.version}'s {shown(champion.score)}"
    sign = 1 if metric.higher_is_better else -1
    if not metric.better_or_equal(score, champion.score - sign * gate.tolerance):
        worse = "<" if metric.higher_is_better else ">"
        return Decision(False, f"{ours} {worse} {theirs} {rows}{allowance}")
    return Decision(True, f"{cleared} and {metric.comparison} {theirs} {rows}{allowance}")


class ChampionCache:
    """Champions already loaded, by tracking server, model and version (a sealed version
    never changes): the warm trainer scores a champion without downloading it again for
    every job. Bounded, and safe to share between the trainer's threads."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._loaded: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, tracking_uri: str, sealed: provenance.SealedVersion) -> Any:
        key = (tracking_uri, sealed.model, sealed.version)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        pipeline = provenance.load_pipeline(sealed, tracking_uri)
        self.keep(tracking_uri, sealed.model, sealed.version, pipeline)
        return pipeline

    def keep(self, tracking_uri: str, model_name: str, version: str, pipeline: Any) -> None:
        """Remember a version's pipeline (one just registered, say)."""
        with self._lock:
            self._loaded[(tracking_uri, model_name, version)] = pipeline
            while len(self._loaded) > self._size:
                self._loaded.popitem(last=False)


# MLflow's answers when the model or the alias does not exist: there is no champion.
_NO_CHAMPION = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def alias_version(client: Any, model_name: str, alias: str) -> str | None:
    """The version `alias` names; None when the model or the alias does not exist."""
    found = aliased(client, model_name, alias)
    return str(found.version) if found else None


def aliased(client: Any, model_name: str, alias: str) -> Any | None:
    """The ModelVersion `alias` names, with its tags; None when the model or the alias
    does not exist.

    MLflow's basic-auth app answers PERMISSION_DENIED, not RESOURCE_DOES_NOT_EXIST, about
    a registered model that does not exist, so a refusal is checked with a search (which
    lists only what the user may read): absent there, there is no champion. Raises
    MlflowException otherwise.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in _NO_CHAMPION:
            return None
        if exc.error_code == "PERMISSION_DENIED" and not client.search_registered_models(
            filter_string=f"name = '{model_name}'"
        ):
            return None
        raise


def score_champion(
    client: Any,
    *,
    key: bytes | None,
    model: ModelRef,
    alias: str,
    x_test: Any,
    y_test: Any,
    cache: ChampionCache | None = None,
) -> ChampionScore | None:
    """The current champion's score on the gate's metric on the new held-out rows; None
    without a champion. `client` is an MlflowClient (the job's own connection)."""
    from mlflow.exceptions import MlflowException

    from mlops.ml.model import evaluate  # scikit-learn: jobs score, replicas never do

    name = model.registered_model
    try:
        version = alias_version(client, name, alias)
    except MlflowException as exc:
        return ChampionScore(None, None, f"MLflow: {exc.message}", fail_closed=True)
    if version is None:
        return None
    try:
        sealed = provenance.verified(client, key, name, version)
    except (provenance.ForeignVersion, MlflowException) as exc:
        return ChampionScore(version, None, str(exc), fail_closed=True)
    why_not = _not_comparable(sealed.card, model.task, x_test, y_test)
    if why_not:
        return ChampionScore(version, None, why_not)
    try:
        pipeline = (cache or ChampionCache(size=1)).load(client.tracking_uri, sealed)
        score = evaluate(pipeline, x_test, y_test, model.task)[model.gate.metric]
    except Exception as exc:  # fail closed, whatever broke: never promote on no evidence
        return ChampionScore(version, None, f"{type(exc).__name__}: {exc}", fail_closed=True)
    return ChampionScore(version, score)


def load_champion(
    client: Any, *, key: bytes | None, model: ModelRef, alias: str, cache: ChampionCache
) -> None:
    """Load the current champion into `cache` ahead of its scoring (a search does it
    while its trials run). `score_champion` still reads the alias and the seal again, so
    a champion moved meanwhile is scored instead; it also reports any failure here."""
    name = model.registered_model
    try:
        version = alias_version(client, name, alias)
        if version is not None:
            cache.load(client.tracking_uri, provenance.verified(client, key, name, version))
    except Exception as exc:  # whatever broke, score_champion meets it again and fails closed
        log.info("champion of %s not loaded ahead of its scoring: %s", name, exc)


def _not_comparable(card: Any, task: Task, x_test: Any, y_test: Any) -> str | None:
    """Why a champion cannot be scored on these rows (other task, features or classes)."""
    if card.task is not task:
        return f"a {card.task} model"
    if card.features != [str(c) for c in x_test.columns]:
        return f"other features: {', '.join(card.features) or 'unknown'}"
    classes = set(card.classes)
    if task is Task.CLASSIFICATION and not set(map(str, y_test.unique())) <= classes:
        return f"other classes: {', '.join(sorted(classes))}"
    return None
