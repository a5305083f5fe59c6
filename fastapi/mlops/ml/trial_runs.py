"""Each trial of a search as an MLflow child run of the search's parent run, logged by
the search's driver as Tune reports on its trials.

The trials themselves then never import MLflow or talk to the tracking server. A run
opens when its trial starts (with the trial's parameters, the search's fixed ones
included), takes the scores the trial reports, and ends FINISHED once scored, FAILED,
or KILLED when the search ended before the trial scored (its time budget).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from ray import tune


class TrialRuns(tune.Callback):
    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment_id: str,
        parent_run_id: str,
        fixed: Mapping[str, Any],
        metrics: Iterable[str],
    ) -> None:
        from mlflow import MlflowClient
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        self._client = MlflowClient(tracking_uri)
        self._parent_tag = {MLFLOW_PARENT_RUN_ID: parent_run_id}
        self._experiment_id = experiment_id
        self._fixed = dict(fixed)
        self._metrics = frozenset(metrics)
        self._runs: dict[str, str] = {}  # trial id: its open run's id
        self._scored: set[str] = set()  # trials that reported their scores

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from mlflow.entities import Param

        run = self._client.create_run(
            self._experiment_id,
            run_name=str(trial),
            tags=self._parent_tag,
        )
        self._runs[trial.trial_id] = run.info.run_id
        params = {**self._fixed, **(trial.config or {})}
        self._client.log_batch(
            run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()]
        )

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        from mlflow.entities import Metric

        if (run_id := self._runs.get(trial.trial_id)) is None:
            return
        now = int(time.time() * 1000)
        logged = [Metric(k, float(v), now, 0) for k, v in result.items() if k in self._metrics]
        self._client.log_batch(run_id, metrics=logged)
        self._scored.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial.trial_id, "FINISHED" if trial.trial_id in self._scored else "KILLED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial.trial_id, "FAILED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial_id in list(self._runs):  # trials the search's end cut short
            self._end(trial_id, "KILLED")

    def _end(self, trial_id: str, status: str) -> None:
        self._scored.discard(trial_id)
        if (run_id := self._runs.pop(trial_id, None)) is not None:
            self._client.set_terminated(run_id, status)
