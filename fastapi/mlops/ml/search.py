"""A hyperparameter search on Ray Tune, as the Ray job runs it:

    python -m mlops.ml.search --spec '{"job_id": "tune-…", "search_space": {…}, …}'

Trials run in parallel on the cluster's CPUs (one CPU each, up to
`max_concurrent_trials`), each an MLflow child run of the search's parent run, which
the driver logs (`ml.trial_runs`): a trial never talks to the tracking server. The best
trial's fitted model, kept while the search runs (`ml.best_trial`), is logged into the
parent run, registered, and put through the promotion gate like any training (the
champion it is compared with is loaded while the trials run), with the same job record
fields and alerts. The configurations are drawn with MLOPS_RANDOM_SEED, so the same
search tries the same ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from mlops import logs
from mlops.contracts.jobs import JobOutcome, SearchProgress
from mlops.contracts.model_definition import METRICS, ModelRef
from mlops.contracts.placement import on_trainer_nodes
from mlops.contracts.recording import JobRecording
from mlops.contracts.version_card import TAG_JOB
from mlops.ml import best_trial, execute, model, promotion, search_space, train
from mlops.ml.estimators import Family
from mlops.ml.niceness import yield_to_serving
from mlops.ml.phases import Phases
from mlops.ml.specs import SearchSpec, TrainingSpec
from mlops.ml.trial_runs import TrialRuns
from mlops.settings.training import TrainingSettings

log = logging.getLogger("mlops.search")

FIT_SECONDS = "fit_seconds"  # a trial's own fit, reported with its scores


class SearchFailed(Exception):
    """Every trial of a search failed; the message has the first error."""


def run_trial(
    config: dict[str, Any],
    *,
    parts: model.Split,
    family: Family,
    fixed: dict[str, Any],
    metric: str,
    default_max_depth: int,
    keeper: Any,  # the search's best_trial.BestTrial actor
    niceness: int,
) -> None:
    """One trial: fit and score one configuration, offer the model to the search's
    keeper of the best one, and report the scores, which the search's driver logs as
    the trial's child run (`ml.trial_runs`). Its process yields to serving first (Ray
    starts it at the niceness Serve's processes have)."""
    yield_to_serving(niceness)
    params = {**fixed, **config}
    pipeline = model.build_pipeline(family, params, default_max_depth=default_max_depth)
    started = time.perf_counter()
    pipeline.fit(parts.x_train, parts.y_train)
    seconds = time.perf_counter() - started
    scores = model.evaluate(pipeline, parts.x_test, parts.y_test, family.task)
    fitted = train.Fitted(pipeline, scores, cpus=1, seconds=seconds)
    best_trial.offer(keeper, scores[metric], config, fitted)
    tune.report({**scores, FIT_SECONDS: round(seconds, 3)})


class Progress(tune.Callback):
    """Trials finished and failed, and the best score so far, on the job record."""

    def __init__(self, spec: SearchSpec, recorder: JobRecording) -> None:
        self._spec = spec
        self._recorder = recorder

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trials)

    def _record(self, trials: list) -> None:
        scores = [
            score
            for t in trials
            if t.status == "TERMINATED" and (score := self._score(t)) is not None
        ]
        failed = sum(t.status == "ERROR" for t in trials)
        best = max if self._spec.metric.higher_is_better else min
        progress: SearchProgress = {
            "trials_finished": len(scores),
            "trials_failed": failed,
            "best_score": best(scores, default=None),
        }
        self._recorder.progress(self._spec.job_id, progress)

    def _score(self, trial: Any) -> float | None:
        return (trial.last_result or {}).get(self._spec.metric)


def search(
    settings: TrainingSettings, spec: SearchSpec, recorder: JobRecording, phases: Phases
) -> train.TrainingResult:
    import mlflow

    ref = spec.model
    with phases.timed("data"):
        parts = train.load_split(settings, spec.dataset_uri, spec.target_column, ref.task)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    experiment = train.experiment_id(client, ref.experiment)
    parent = client.create_run(experiment, run_name=spec.job_id, tags={TAG_JOB: spec.job_id})
    parent_id = parent.info.run_id
    client.log_param(parent_id, "search_space", json.dumps(spec.search_space))
    client.log_param(parent_id, "trials", spec.trials)
    client.log_param(parent_id, "metric", spec.metric)
    # One seed for every trial unless it is searched: a refit is the trial's model.
    fixed = {"random_state": settings.random_seed, **spec.fixed}
    champions = promotion.ChampionCache(size=1)
    try:
        keeper = best_trial.start(spec.metric.higher_is_better, settings.training_niceness)
        with ThreadPoolExecutor(1) as ahead, phases.timed("fit"):
            # While the trials run: the champion loaded for the gate to score.
            ahead.submit(_load_champion, settings, ref, champions)
            score, best, finished, failed = _tune(
                settings, spec, recorder, parts, fixed, experiment, parent_id, keeper
            )
            kept = ray.get(keeper.kept.remote(score))
        params = {**fixed, **(kept.config if kept else best)}
        fitted = kept.fitted if kept else _refit(settings, spec, params, parts, phases)
        client.log_metric(parent_id, f"best_{spec.metric}", fitted.scores[spec.metric])
        training = TrainingSpec(
            job_id=spec.job_id,
            model=ref,
            hyperparameters=params,
            dataset_uri=spec.dataset_uri,
            target_column=spec.target_column,
        )
        result = train.register(
            settings, training, fitted, parts, run_id=parent_id, champions=champions, phases=phases
        )
    except Exception:
        client.set_terminated(parent_id, "FAILED")
        raise
    extra: JobOutcome = {
        "trials_finished": finished,
        "trials_failed": failed,
        "best_score": fitted.scores[spec.metric],
        "hyperparameters": params,
        "cpus": fitted.cpus,
        "fit_seconds": round(fitted.seconds, 3),
    }
    return dataclasses.replace(result, extra=extra)


def _load_champion(
    settings: TrainingSettings, ref: ModelRef, champions: promotion.ChampionCache
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)  # its own: this runs in a thread
    alias, key = settings.champion_alias, settings.signing_key()
    promotion.load_champion(client, key=key, model=ref, alias=alias, cache=champions)


def _refit(
    settings: TrainingSettings,
    spec: SearchSpec,
    params: dict[str, Any],
    parts: model.Split,
    phases: Phases,
) -> train.Fitted:
    log.info("search %s: the best trial's model was not kept; fitting it again", spec.job_id)
    limits = train.FitLimits.of(settings)
    return train.fit(Family.of(spec.model), params, parts, limits, phases)


def _tune(
    settings: TrainingSettings,
    spec: SearchSpec,
    recorder: JobRecording,
    parts: model.Split,
    fixed: dict[str, Any],
    experiment_id: str,
    parent_id: str,
    keeper: Any,
) -> tuple[float, dict[str, Any], int, int]:
    """Run the trials; (best score, its configuration, trials finished, trials failed)."""
    trainable = tune.with_parameters(
        run_trial,
        parts=parts,
        family=Family.of(spec.model),
        fixed=fixed,
        metric=spec.metric,
        default_max_depth=settings.max_depth_limit,
        keeper=keeper,
        niceness=settings.training_niceness,
    )
    tuner = tune.Tuner(
        # On trainer nodes (contracts.placement): the cluster keeps them apart from serving.
        tune.with_resources(trainable, {"cpu": 1, **on_trainer_nodes()}),
        param_space=search_space.to_tune(spec.search_space),
        tune_config=_tune_config(settings, spec),
        run_config=tune.RunConfig(
            name=spec.job_id,
            storage_path=str(settings.data_dir / "tune"),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            callbacks=[
                Progress(spec, recorder),
                TrialRuns(
                    settings.mlflow_tracking_uri,
                    experiment_id=experiment_id,
                    parent_run_id=parent_id,
                    fixed=fixed,
                    metrics=[*METRICS[spec.model.task], FIT_SECONDS],
                ),
            ],
            verbose=0,
        ),
    )
    return _best(settings, spec, tuner.fit())


def _tune_config(settings: TrainingSettings, spec: SearchSpec) -> tune.TuneConfig:
    return tune.TuneConfig(
        metric=spec.metric,
        mode="max" if spec.metric.higher_is_better else "min",
        num_samples=spec.trials,
        # Trials still running then are stopped; the best finished one wins.
        time_budget_s=settings.tune_time_budget_seconds,
        max_concurrent_trials=spec.max_concurrent_trials,
        reuse_actors=True,  # a trial's worker keeps scikit-learn imported
        # Seeded: the same search draws the same configurations. The generator given
        # here must carry the limit itself: Tune applies max_concurrent_trials only to
        # the generator it makes.
        search_alg=BasicVariantGenerator(
            random_state=settings.random_seed,
            max_concurrent=spec.max_concurrent_trials or 0,
        ),
    )


def _best(
    settings: TrainingSettings, spec: SearchSpec, grid: Any
) -> tuple[float, dict[str, Any], int, int]:
    """(the best trial's score and configuration, trials finished, trials failed) of a
    search's results; SearchFailed when no trial scored."""
    results = [grid[i] for i in range(len(grid))]
    scored = [
        (r.metrics[spec.metric], r.config or {})
        for r in results
        if r.error is None and r.metrics and spec.metric in r.metrics
    ]
    failed = sum(r.error is not None for r in results)
    if not scored:
        if not failed:
            raise SearchFailed(
                f"no trial finished within the search's time budget of "
                f"{settings.tune_time_budget_seconds:g} s (MLOPS_TUNE_TIME_BUDGET_SECONDS)"
            )
        first = grid.errors[0] if grid.errors else "no trial reported a score"
        raise SearchFailed(f"{failed} of {len(results)} trials failed; the first: {first}")
    best = max if spec.metric.higher_is_better else min
    score, config = best(scored, key=lambda pair: pair[0])
    log.info(
        "search %s: %d trials, %d failed, %d stopped by the time budget; best %s %.4f with %s",
        spec.job_id,
        len(results),
        failed,
        len(results) - len(scored) - failed,
        spec.metric,
        score,
        config,
    )
    return score, dict(config), len(scored), failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the search as JSON (ml.specs.SearchSpec)")
    args = parser.parse_args(argv)
    spec = SearchSpec.from_json(args.spec)
    settings = TrainingSettings()
    yield_to_serving(settings.training_niceness)
    logs.job_id.set(spec.job_id)
    logs.configure(settings.log_format)
    # The entrypoint wires the recorder: the search itself knows only its contract.
    from mlops.clients.redis.recorder import JobRecorder

    recorder = JobRecorder(settings)
    work = lambda phases: search(settings, spec, recorder, phases)  # noqa: E731
    return execute.execute(settings, spec.job_id, spec.model, work, recorder, what="Search")


if __name__ == "__main__":
    sys.exit(main())
