"""What a search's state keeps of the best trial's model, here in one process
(tests/service/test_tune.py checks a search registers the kept model through Ray)."""

from __future__ import annotations

from mlops.ml.search_state import SearchState
from mlops.ml.train import Fitted


def _fitted(name: str) -> Fitted:
    return Fitted(pipeline=name, scores={}, cpus=1, seconds=1.0)


def test_it_keeps_the_best_in_the_metrics_direction() -> None:
    accuracy, rmse = SearchState(higher_is_better=True), SearchState(higher_is_better=False)

    for score, name in [(0.8, "a"), (0.9, "b"), (0.7, "c")]:
        accuracy.offer(score, {"trial": name}, _fitted(name))
        rmse.offer(score, {"trial": name}, _fitted(name))

    best_accuracy, best_rmse = accuracy.kept(0.9), rmse.kept(0.7)
    assert best_accuracy and best_accuracy.config == {"trial": "b"}
    assert best_accuracy.fitted.pipeline == "b"
    assert best_rmse and best_rmse.config == {"trial": "c"}


def test_of_equal_scores_the_first_offered_stays() -> None:
    keeper = SearchState(higher_is_better=True)

    assert keeper.offer(0.9, {"trial": "first"}, _fitted("first")) is True
    assert keeper.would_keep(0.9) is False  # so the second trial does not send its model
    assert keeper.offer(0.9, {"trial": "second"}, _fitted("second")) is False

    kept = keeper.kept(0.9)
    assert kept and kept.config == {"trial": "first"}


def test_nothing_is_given_for_another_score_than_the_one_kept() -> None:
    keeper = SearchState(higher_is_better=True)
    assert keeper.kept(0.9) is None  # no trial offered

    keeper.offer(0.95, {"trial": "stopped before it reported"}, _fitted("stopped"))

    assert keeper.kept(0.9) is None  # the search fits the best reported one again
