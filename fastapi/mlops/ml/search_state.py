"""What a search's trials share while it runs: what they fit on and how (the split,
the estimator family, the fixed hyperparameters), and the best trial's fitted model,
kept so that the search registers that model instead of fitting its configuration
again. One `SearchState` actor a search, named for its job (a trial finds it by name:
the trainer runs many searches, all with one trainable), ended with the search, which
frees both.

Each trial offers its fitted pipeline before it reports its score to Tune. The actor
keeps one model: the first offered with the best score so far, so its memory is one
model whatever the number of trials. The search asks for it with the best score Tune
saw. It gets nothing if the model kept has another score (a trial that offered, then
was stopped by the time budget before it reported), and then fits the best
configuration again with the same seed and split.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ray

from mlops.contracts.trainer import NAMESPACE
from mlops.ml.estimators import Family
from mlops.ml.model import Split
from mlops.ml.train import Fitted


@dataclasses.dataclass(frozen=True)
class TrialSetup:
    """What every trial of a search fits on, and how."""

    split: Split
    family: Family
    fixed: dict[str, Any]  # hyperparameters no trial searches
    metric: str  # the score the search ranks trials by
    default_max_depth: int
    niceness: int


@dataclasses.dataclass(frozen=True)
class Kept:
    score: float
    config: dict[str, Any]  # the trial's searched hyperparameters
    fitted: Fitted


class SearchState:
    """A Ray actor (`start` creates one per search, `end` ends it)."""

    def __init__(
        self, higher_is_better: bool, setup: list[Any] | None = None, niceness: int | None = None
    ) -> None:
        if niceness is not None:  # in its own process: it takes in each better model
            from mlops.ml.niceness import yield_to_serving

            yield_to_serving(niceness)
        self._higher_is_better = higher_is_better
        self._setup = setup or []  # [the ObjectRef of the search's TrialSetup], unresolved
        self._kept: Kept | None = None

    def setup(self) -> list[Any]:
        """[the ObjectRef of the search's TrialSetup]: a trial gets it from the object
        store."""
        return self._setup

    def would_keep(self, score: float) -> bool:
        """Whether a model of this score would be kept: asked before a trial sends its
        model, which can be large."""
        return self._kept is None or self._beats(score, self._kept.score)

    def offer(self, score: float, config: dict[str, Any], fitted: Fitted) -> bool:
        """Keep this trial's model if its score beats the one kept; whether it did."""
        if not self.would_keep(score):
            return False
        self._kept = Kept(score, config, fitted)
        return True

    def kept(self, score: float) -> Kept | None:
        """The model kept, if its score is `score` (the best that Tune saw)."""
        return self._kept if self._kept is not None and self._kept.score == score else None

    def _beats(self, score: float, other: float) -> bool:
        return score > other if self._higher_is_better else score < other


def state_name(job_id: str) -> str:
    return f"search-{job_id}"


def start(job_id: str, setup: TrialSetup, higher_is_better: bool) -> Any:
    """The `SearchState` actor of search `job_id`, holding its trials' `setup`, at the
    training's niceness; it takes no logical CPU from the trials."""
    return (
        ray.remote(SearchState)
        .options(name=state_name(job_id), namespace=NAMESPACE, num_cpus=0)
        .remote(higher_is_better, [ray.put(setup)], setup.niceness)
    )


def end(state: Any) -> None:
    """The search is over: its actor ends, and with it the model and split it held."""
    ray.kill(state)


def setup_of(state: Any) -> TrialSetup:
    """The search's trial setup, as a trial reads it (from the object store, not
    copied)."""
    setup: TrialSetup = ray.get(ray.get(state.setup.remote())[0])
    return setup


def offer(state: Any, score: float, config: dict[str, Any], fitted: Fitted) -> None:
    """A trial's model offered to the search's `state`, sent only if it would be kept."""
    if ray.get(state.would_keep.remote(score)):
        ray.get(state.offer.remote(score, config, fitted))
