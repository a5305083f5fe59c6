"""The best trial's fitted model, kept while a search runs, so that the search registers
that model instead of fitting its configuration again.

Each trial offers its fitted pipeline to the search's `BestTrial` actor before it
reports its score to Tune. The actor keeps one model: the first offered with the best
score so far, so its memory is one model whatever the number of trials. The search asks
for it with the best score Tune saw. It gets nothing if the model kept has another score
(a trial that offered, then was stopped by the time budget before it reported), and then
fits the best configuration again with the same seed and split.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ray

from mlops.ml.train import Fitted


@dataclasses.dataclass(frozen=True)
class Kept:
    score: float
    config: dict[str, Any]  # the trial's searched hyperparameters
    fitted: Fitted


class BestTrial:
    """A Ray actor (`start` creates one per search; it ends with the search's driver)."""

    def __init__(self, higher_is_better: bool, niceness: int | None = None) -> None:
        if niceness is not None:  # in its own process: it takes in each better model
            from mlops.ml.niceness import yield_to_serving

            yield_to_serving(niceness)
        self._higher_is_better = higher_is_better
        self._kept: Kept | None = None

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


def start(higher_is_better: bool, niceness: int) -> Any:
    """A `BestTrial` actor for one search, at the training's `niceness`; it takes no
    logical CPU from the trials."""
    return ray.remote(BestTrial).options(num_cpus=0).remote(higher_is_better, niceness)


def offer(keeper: Any, score: float, config: dict[str, Any], fitted: Fitted) -> None:
    """A trial's model offered to the search's `keeper`, sent only if it would be kept."""
    if ray.get(keeper.would_keep.remote(score)):
        ray.get(keeper.offer.remote(score, config, fitted))
