"""A hyperparameter search on Ray Tune: the work of a search job (`mlops.ml.job --kind
tune`), which the warm trainer runs as it runs a training's, so Tune's driver has its
imports done and starts as soon as Ray has accepted the job.

Trials run in parallel on the cluster's CPUs (one CPU each, up to
`max_concurrent_trials`), each an MLflow child run of the search's parent run, which
the driver logs (`ml.trial_runs`): a trial never talks to the tracking server. The best
trial's fitted model, kept while the search runs (`ml.search_state`), is logged into the
parent run, registered, and put through the promotion gate like any training (the
champion it is compared with is loaded while the trials run), with the same job record
fields and alerts. The configurations are drawn with MLOPS_RANDOM_SEED, so the same
search tries the same ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from mlops.contracts.jobs import JobOutcome, SearchProgress
from mlops.contracts.model_definition import METRICS, ModelRef
from mlops.contracts.placement import on_trainer_nodes
from mlops.contracts.recording import JobRecording
from mlops.contracts.trainer import NAMESPACE
from mlops.contracts.version_card import TAG_JOB
from mlops.ml import execute, model, promotion, search_space, search_state, train
from mlops.ml.estimators import Family
from mlops.ml.niceness import yield_to_serving
from mlops.ml.phases import JobStopped, Phases
from mlops.ml.specs import SearchSpec, TrainingSpec
from mlops.ml.trial_runs import TrialRuns
from mlops.settings.training import TrainingSettings

log = logging.getLogger("mlops.search")

FIT_SECONDS = "fit_seconds"  # a trial's own fit, reported with its scores
STOP_CHECK_S = 1.0  # how often a running search asks whether its job was stopped
# The name the trials' trainable is registered under with Tune (`register_trial`).
TRIAL = "mlops-trial"


class SearchFailed(Exception):
    """Every trial of a search failed; the message has the first error."""


def register_trial() -> None:
    """Register the trials' trainable with Tune as TRIAL, on trainer nodes
    (contracts.placement). Once per process, before any search: Tune's registry is not
    safe for two registrations at once, which two searches in the trainer's threads
    made when each passed its trainable itself ("dictionary changed size during
    iteration" in `_Registry.flush_values`, Ray 2.60)."""
    tune.register_trainable(TRIAL, tune.with_resources(run_trial, {"cpu": 1, **on_trainer_nodes()}))


def run_trial(config: dict[str, Any]) -> None:
    """One trial: fit and score one configuration on the search's split, offer the model
    to the search's state, and report the scores, which the search's driver logs as the
    trial's child run (`ml.trial_runs`). The same trainable for every search: a trial
    finds its search's state by Tune's experiment name, which is the job id. Its process
    yields to serving before it fits (Ray starts it at the niceness Serve's processes
    have)."""
    job_id = tune.get_context().get_experiment_name()
    shared = ray.get_actor(search_state.state_name(job_id), namespace=NAMESPACE)
    trial = search_state.setup_of(shared)
    yield_to_serving(trial.niceness)
    parts, family = trial.split, trial.family
    params = {**trial.fixed, **config}
    pipeline = model.build_pipeline(family, params, default_max_depth=trial.default_max_depth)
    started = time.perf_counter()
    pipeline.fit(parts.x_train, parts.y_train)
    seconds = time.perf_counter() - started
    scores = model.evaluate(pipeline, parts.x_test, parts.y_test, family.task)
    fitted = train.Fitted(pipeline, scores, cpus=1, seconds=seconds)
    search_state.offer(shared, scores[trial.metric], config, fitted)
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
    settings: TrainingSettings,
    spec: SearchSpec,
    recorder: JobRecording,
    phases: Phases,
    champions: promotion.ChampionCache | None = None,
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
    if champions is None:  # in a process of its own: the trainer passes its cache
        champions = promotion.ChampionCache(size=1)
    try:
        with ThreadPoolExecutor(1) as ahead, phases.timed("fit"):
            # While the trials run: the champion loaded for the gate to score.
            ahead.submit(_load_champion, settings, ref, champions)
            kept, best, finished, failed = _trials(
                settings, spec, recorder, phases, parts, fixed, experiment, parent_id
            )
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


def _trials(
    settings: TrainingSettings,
    spec: SearchSpec,
    recorder: JobRecording,
    phases: Phases,
    parts: model.Split,
    fixed: dict[str, Any],
    experiment_id: str,
    parent_id: str,
) -> tuple[search_state.Kept | None, dict[str, Any], int, int]:
    """Run the trials with the search's state shared, ended with them; (the best
    trial's model if kept, the best configuration, trials finished, trials failed)."""
    setup = search_state.TrialSetup(
        split=parts,
        family=Family.of(spec.model),
        fixed=fixed,
        metric=spec.metric,
        default_max_depth=settings.max_depth_limit,
        niceness=settings.training_niceness,
    )
    state = search_state.start(spec.job_id, setup, spec.metric.higher_is_better)
    try:
        score, best, finished, failed = _tune(
            settings, spec, recorder, phases, fixed, experiment_id, parent_id
        )
        return ray.get(state.kept.remote(score)), best, finished, failed
    finally:
        search_state.end(state)


def _tune(
    settings: TrainingSettings,
    spec: SearchSpec,
    recorder: JobRecording,
    phases: Phases,
    fixed: dict[str, Any],
    experiment_id: str,
    parent_id: str,
) -> tuple[float, dict[str, Any], int, int]:
    """Run the trials; (best score, its configuration, trials finished, trials failed).
    JobStopped when the job was stopped while they ran: Tune stops them all."""
    storage = settings.tune_dir
    tuner = tune.Tuner(
        TRIAL,  # registered before any search (register_trial): Tune registers nothing
        param_space=search_space.to_tune(spec.search_space),
        tune_config=_tune_config(settings, spec),
        run_config=tune.RunConfig(
            name=spec.job_id,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            stop=JobStopper(phases.stopped),
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
    try:
        grid = tuner.fit()
        if phases.stopped():
            raise JobStopped("stopped in Ray during its search")
        return _best(settings, spec, grid)
    finally:
        # What Tune saved of the search is for a restore this platform never does: the
        # trials are MLflow runs, the outcome is the job's record.
        shutil.rmtree(storage / spec.job_id, ignore_errors=True)


class JobStopper(tune.Stopper):
    """Every trial, once the job is stopped in Ray. Tune asks at every step of its loop;
    the job's record, which a stop can reach first, is read once in STOP_CHECK_S."""

    def __init__(self, stopped: Callable[[], bool]) -> None:
        self._stopped = stopped
        self._was_stopped = False
        self._next_check = 0.0

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        now = time.monotonic()
        if not self._was_stopped and now >= self._next_check:
            self._next_check = now + STOP_CHECK_S
            self._was_stopped = self._stopped()
        return self._was_stopped

    def __reduce__(self) -> tuple[Any, ...]:
        # Tune saves its run's configuration with the results, for a restore that this
        # platform never does; what it saves stops nothing (the flag is the trainer's).
        return (JobStopper, (_never,))


def _never() -> bool:
    return False


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


def job(
    settings: TrainingSettings,
    spec: SearchSpec,
    recorder: JobRecording,
    champions: promotion.ChampionCache | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> int:
    """One search job, start to recorded outcome; its exit code. `register_trial` has
    run in this process."""
    work = lambda phases: search(settings, spec, recorder, phases, champions)  # noqa: E731
    return execute.execute(
        settings, spec.job_id, spec.model, work, recorder, what="Search", stopped=stopped
    )
