"""Hyperparameter search on Ray Tune, and parallel fitting on the Ray cluster: real Ray
jobs, a real MLflow, Redis, and Ray's own state API to see where the work ran.

Each test trains under a model name of its own (an extra API on the session's Ray,
MLflow and Valkey), so the session's champion is never moved.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import ray_headers, wait_for, wait_for_job
from mlflow import MlflowClient
from mlflow.entities import Run
from sklearn.datasets import make_classification

from mlops.contracts.model_definition import Estimator, Task
from mlops.ml import data, model
from mlops.ml.estimators import Family
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow

SPACE = {
    "n_estimators": {"choice": [5, 20]},
    "max_depth": {"randint": [2, 6]},
    "min_samples_leaf": {"randint": [1, 3]},
}


def _own_model(start_api, redis_db: int, **overrides):
    name = f"own_{uuid.uuid4().hex[:8]}"
    client, _ = start_api(redis_db=redis_db, model_name=name, **overrides)
    return client, name


def test_a_search_registers_its_best_trial_with_a_child_run_per_trial(
    start_api, settings: PlatformSettings
) -> None:
    api, name = _own_model(start_api, redis_db=5)

    accepted = api.post("/tune", json={"search_space": SPACE, "trials": 3, "metric": "f1_macro"})

    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    job = wait_for_job(api, job_id, timeout=300)
    assert job["status"] == "succeeded", job
    assert job["kind"] == "tune" and job["metric"] == "f1_macro"
    assert job["trials_total"] == 3 and job["trials_finished"] == 3 and job["trials_failed"] == 0
    # What Tune saved of the search is gone with it (the settings it held, secrets left
    # out, among it): the trials are MLflow runs.
    assert not (settings.data_dir / "tune" / job_id).exists()
    registry = MlflowClient(settings.mlflow_tracking_uri)
    children = _child_runs(registry, job["run_id"])
    assert len(children) == 3
    assert all(c.info.status == "FINISHED" for c in children)
    best_child = max(c.data.metrics["f1_macro"] for c in children)
    assert job["best_score"] == pytest.approx(best_child)
    # The registered version is the best trial's configuration, logged in the parent run.
    version = registry.get_model_version(name, job["model_version"])
    assert version.run_id == job["run_id"]
    assert version.tags["mlops.job_id"] == job_id
    searched = {key: job["hyperparameters"][key] for key in SPACE}
    assert any(
        {key: float(c.data.params[key]) for key in SPACE}
        == {key: float(value) for key, value in searched.items()}
        and c.data.metrics["f1_macro"] == pytest.approx(best_child)
        for c in children
    )
    # It is the best trial's own fit, kept, not fitted again: its fit time is that trial's.
    assert any(
        c.data.metrics["fit_seconds"] == pytest.approx(job["fit_seconds"])
        and c.data.metrics["f1_macro"] == pytest.approx(best_child)
        for c in children
    )
    # The same promotion gate as any training: first version, so it clears the threshold.
    assert job["promoted"] is True
    assert registry.get_model_version_by_alias(name, "champion").version == job["model_version"]
    # It ran in the warm trainer, which outlives it: what the search held is freed.
    assert _search_state(settings, job_id) == ["DEAD"]


def test_two_searches_at_once_in_the_trainer_keep_their_own_trials(
    start_api, settings: PlatformSettings
) -> None:
    api, _ = _own_model(start_api, redis_db=13)
    shallow = {"search_space": {"max_depth": {"choice": [2]}}, "trials": 2}
    deep = {"search_space": {"max_depth": {"choice": [5]}}, "trials": 2}

    ids = [api.post("/tune", json=body).json()["job_id"] for body in (shallow, deep)]
    jobs = [wait_for_job(api, job_id, timeout=300) for job_id in ids]

    assert [job["status"] for job in jobs] == ["succeeded", "succeeded"], jobs
    registry = MlflowClient(settings.mlflow_tracking_uri)
    for job, depth in zip(jobs, ("2", "5"), strict=True):
        children = _child_runs(registry, job["run_id"])
        assert len(children) == 2 and {c.data.params["max_depth"] for c in children} == {depth}
        assert job["hyperparameters"]["max_depth"] == int(depth)


def test_failed_trials_are_recorded_and_the_search_goes_on_unless_all_fail(
    start_api, settings: PlatformSettings
) -> None:
    api, _ = _own_model(start_api, redis_db=9)
    # A class weight naming a class iris lacks fails in the trial's fit, not before (the
    # API cannot know a dataset's classes); the seeded draw gives both values.
    good, bad = {"Setosa": 2.0}, {"Nope": 2.0}
    mixed = {"search_space": {"class_weight": {"choice": [good, bad]}}, "trials": 6}
    doomed = {"search_space": {"class_weight": {"choice": [bad, {"Nix": 1.0}]}}, "trials": 2}

    survived = wait_for_job(api, api.post("/tune", json=mixed).json()["job_id"], timeout=300)
    failed = wait_for_job(api, api.post("/tune", json=doomed).json()["job_id"], timeout=300)

    assert survived["status"] == "succeeded", survived
    assert survived["trials_failed"] >= 1 and survived["trials_finished"] >= 1
    assert survived["trials_failed"] + survived["trials_finished"] == 6
    assert survived["hyperparameters"]["class_weight"] == good
    registry = MlflowClient(settings.mlflow_tracking_uri)
    children = _child_runs(registry, survived["run_id"])
    statuses = sorted(c.info.status for c in children)
    assert statuses.count("FAILED") == survived["trials_failed"]
    assert statuses.count("FINISHED") == survived["trials_finished"]
    assert failed["status"] == "failed"
    assert "2 of 2 trials failed" in failed["error"] and "class_weight" in failed["error"]


def test_max_concurrent_trials_is_kept(start_api, settings: PlatformSettings) -> None:
    api, _ = _own_model(start_api, redis_db=10)
    search = {"search_space": {"max_depth": {"randint": [2, 6]}}, "trials": 3}

    job = wait_for_job(
        api, api.post("/tune", json={**search, "max_concurrent_trials": 1}).json()["job_id"]
    )

    assert job["status"] == "succeeded", job
    registry = MlflowClient(settings.mlflow_tracking_uri)
    children = _child_runs(registry, job["run_id"])
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    assert len(spans) == 3
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


def test_trials_the_time_budget_cuts_short_end_killed_not_running(
    start_api, settings: PlatformSettings
) -> None:
    path = settings.data_dir / "slow-trials.csv"
    _synthetic(path, rows=60_000)  # each trial's forest fits for far longer than the budget
    api, _ = _own_model(
        start_api,
        redis_db=9,
        dataset_uri=str(path),
        target_column="label",
        tune_time_budget_seconds=12,
    )
    search = {"search_space": {"n_estimators": {"choice": [500]}}, "trials": 2}

    job = wait_for_job(api, api.post("/tune", json=search).json()["job_id"], timeout=300)

    assert job["status"] == "failed", job
    assert "no trial finished within the search's time budget of 12 s" in job["error"]
    registry = MlflowClient(settings.mlflow_tracking_uri)
    parent = _search_run(registry, job["job_id"])
    assert parent is not None and parent.info.status == "FAILED"
    children = _child_runs(registry, parent.info.run_id)
    assert children, "the trials had started: their child runs were opened"
    assert {c.info.status for c in children} == {"KILLED"}


def test_a_search_stopped_in_ray_stops_its_trials_and_registers_nothing(
    start_api, settings: PlatformSettings
) -> None:
    path = settings.data_dir / "stopped-search.csv"
    _synthetic(path, rows=60_000)  # each trial's forest fits for far longer than the test
    api, name = _own_model(start_api, redis_db=12, dataset_uri=str(path), target_column="label")
    search = {"search_space": {"n_estimators": {"choice": [500]}}, "trials": 4}
    job_id = api.post("/tune", json=search).json()["job_id"]
    registry = MlflowClient(settings.mlflow_tracking_uri)
    parent = wait_for(lambda: _search_run(registry, job_id), timeout=120, what="the search's run")
    wait_for(lambda: _child_runs(registry, parent.info.run_id), timeout=120, what="a trial")

    stopped_at = time.monotonic()
    httpx.post(
        f"{settings.ray_address}/api/jobs/{job_id}/stop", headers=ray_headers()
    ).raise_for_status()

    job = wait_for_job(api, job_id, timeout=60)
    assert job["status"] == "stopped", job
    assert time.monotonic() - stopped_at < 30  # the trials did not run to their end
    assert job["model_version"] is None
    assert registry.search_model_versions(f"name = '{name}'") == []
    # The work in the trainer ends too, its trials cut short: the search's state goes.
    wait_for(lambda: _search_state(settings, job_id) == ["DEAD"], timeout=60, what="its end")
    assert {c.info.status for c in _child_runs(registry, parent.info.run_id)} == {"KILLED"}


def test_with_a_fresh_process_per_job_a_training_and_a_search_run_in_their_own_drivers(
    start_api, settings: PlatformSettings
) -> None:
    # MLOPS_WARM_TRAINER=false: each job imports and works in its Ray job's own driver.
    api, name = _own_model(start_api, redis_db=12, warm_trainer=False)
    training = {"hyperparameters": {"n_estimators": 10}}

    trained = wait_for_job(api, api.post("/trigger_training", json=training).json()["job_id"])
    search = {"search_space": SPACE, "trials": 2}
    searched = wait_for_job(api, api.post("/tune", json=search).json()["job_id"], timeout=300)

    assert trained["status"] == "succeeded", trained
    assert searched["status"] == "succeeded", searched
    assert searched["trials_finished"] == 2 and searched["trials_failed"] == 0
    registry = MlflowClient(settings.mlflow_tracking_uri)
    versions = {v.version for v in registry.search_model_versions(f"name = '{name}'")}
    assert versions == {trained["model_version"], searched["model_version"]}
    # The search's state actor was made by the job's own driver, not by the warm trainer.
    driver = _ray_job(settings, searched["job_id"])["job_id"]
    makers = [
        a["job_id"]
        for a in _ray_state(settings, "actors")
        if a["name"] == f"search-{searched['job_id']}"
    ]
    assert makers == [driver]


def _ray_job(settings: PlatformSettings, submission_id: str) -> dict:
    """Ray's record of the job submitted as `submission_id`."""
    reply = httpx.get(
        f"{settings.ray_address}/api/jobs/{submission_id}", headers=ray_headers(), timeout=30
    )
    return reply.raise_for_status().json()


def _search_state(settings: PlatformSettings, job_id: str) -> list[str]:
    """The states Ray lists for search `job_id`'s state actor."""
    return [a["state"] for a in _ray_state(settings, "actors") if a["name"] == f"search-{job_id}"]


def _search_run(registry: MlflowClient, job_id: str) -> Run | None:
    """Search `job_id`'s own (parent) run, once it has one."""
    experiments = [e.experiment_id for e in registry.search_experiments()]
    found = registry.search_runs(experiments, filter_string=f"tags.`mlops.job_id` = '{job_id}'")
    return found[0] if found else None


def _child_runs(registry: MlflowClient, parent_run_id: str) -> list:
    """The trials' child runs of a search's run."""
    experiment = registry.get_run(parent_run_id).info.experiment_id
    return registry.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"search_space": {"n_estimator": {"choice": [5]}}}, ["search_space", "n_estimator"],
         "unknown hyperparameter"),
        ({"search_space": {"max_depth": {"normal": [2, 5]}}}, ["search_space", "max_depth"],
         "unsupported distribution 'normal'"),
        ({"search_space": {"max_depth": {"randint": [2, 1000]}}}, ["search_space", "max_depth"],
         "must be ≤ 64"),
        ({"search_space": {"n_estimators": {"choice": [10, 100_000]}}},
         ["search_space", "n_estimators"], "must be ≤ 500"),
        ({"search_space": {"min_samples_leaf": {"uniform": [1, 5]}}},
         ["search_space", "min_samples_leaf"], "min_samples_leaf"),
        ({"search_space": {"max_depth": {"randint": [5, 2]}}}, ["search_space", "max_depth"],
         "low < high"),
        ({"search_space": {}}, ["search_space"], "at least one hyperparameter"),
        ({"search_space": {"n_jobs": {"choice": [2]}}}, ["search_space", "n_jobs"],
         "set by the platform"),
        ({"search_space": SPACE, "trials": 65}, ["trials"], "≤ 64"),
        ({"search_space": SPACE, "trials": 0}, ["trials"], "greater than or equal to 1"),
        ({"search_space": SPACE, "metric": "roc_auc"}, ["metric"], "accuracy"),
    ],
)  # fmt: skip
def test_an_invalid_search_is_422_naming_the_key_and_submits_nothing(
    api: httpx.Client, settings: PlatformSettings, body: dict, loc: list[str], words: str
) -> None:
    jobs_before = api.get("/jobs").json()["jobs"]

    response = api.post("/tune", json=body)
    scheduled = api.post("/schedule_training", json={"minutes": 5, "tune": body})

    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", *loc]
    assert words in error["msg"]
    assert scheduled.status_code == 422
    assert scheduled.json()["detail"][0]["loc"] == ["body", "tune", *loc]
    assert api.get("/jobs").json()["jobs"] == jobs_before


def test_a_schedule_can_run_a_search(start_api) -> None:
    api, _ = _own_model(start_api, redis_db=6)
    search = {"search_space": {"max_depth": {"randint": [2, 4]}}, "trials": 1}

    created = api.post("/schedule_training", json={"minutes": 1, "tune": search})

    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["tune"]["search_space"] == search["search_space"]
    try:
        job = wait_for(
            lambda: next(
                (
                    j
                    for j in api.get("/jobs").json()["jobs"]
                    if j["source"] == schedule["schedule_id"]
                ),
                None,
            ),
            timeout=60,
            what="the schedule's first search",
        )
    finally:
        api.delete(f"/kill_scheduled_job/{schedule['schedule_id']}")
    assert job["kind"] == "tune" and job["trials_total"] == 1


def _synthetic(path, rows: int = 6000) -> None:
    x, y = make_classification(
        n_samples=rows, n_features=8, n_informative=5, n_classes=3, random_state=3
    )
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    frame["label"] = [f"c{v}" for v in y]
    frame.to_csv(path, index=False)


def _ray_state(settings: PlatformSettings, what: str) -> list[dict]:
    """What Ray's state API lists of `what` (actors, tasks)."""
    reply = httpx.get(
        f"{settings.ray_address}/api/v0/{what}",
        params={"limit": 10_000, "detail": "true"},
        headers=ray_headers(),
        timeout=30,
    ).raise_for_status()
    return reply.json()["data"]["result"]["result"]


def _builders_alive(settings: PlatformSettings) -> int:
    """Tree builders Ray lists alive (each holds a CPU)."""
    actors = _ray_state(settings, "actors")
    return sum(a["class_name"] == "TreeBuilder" and a["state"] == "ALIVE" for a in actors)


def _pool_tasks(settings: PlatformSettings, job: dict) -> list[dict]:
    """Ray's record of the ranges of trees built while the job ran."""
    start = datetime.fromisoformat(job["started_at"]).timestamp() * 1000
    end = datetime.fromisoformat(job["finished_at"]).timestamp() * 1000
    return [
        task
        for task in _ray_state(settings, "tasks")
        if task["name"] == "TreeBuilder.fit_range"
        and start <= (task.get("start_time_ms") or 0) <= end
    ]


def test_a_parallel_fit_spreads_its_trees_over_builders_and_equals_a_serial_fit(
    start_api, settings: PlatformSettings, tmp_path: Path
) -> None:
    path = settings.data_dir / "synthetic.csv"
    _synthetic(path)
    # Every fit is worth spreading here (the default spreads only large ones).
    api, name = _own_model(
        start_api,
        redis_db=7,
        parallel_fit_min_work=0,
        dataset_uri=str(path),
        target_column="label",
    )
    hyperparameters = {"n_estimators": 40, "max_depth": 8, "random_state": 11}

    accepted = api.post("/trigger_training", json={"hyperparameters": hyperparameters})
    job = wait_for_job(api, accepted.json()["job_id"], timeout=300)

    assert job["status"] == "succeeded", job
    assert job["cpus"] > 1

    def spread() -> list[dict] | None:
        found = _pool_tasks(settings, job)
        return found if len({t["worker_id"] for t in found}) > 1 else None

    tasks = wait_for(spread, timeout=30, what="Ray's state API to list the tree-building tasks")
    assert len(tasks) > 1
    # The trainer keeps its builders for the next fit, then releases their CPUs.
    assert _builders_alive(settings) >= job["cpus"]
    idle = settings.tree_builders_idle_seconds
    wait_for(lambda: _builders_alive(settings) == 0, timeout=idle + 30, what="builders released")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    registered = mlflow.sklearn.load_model(
        f"models:/{name}/{job['model_version']}", dst_path=str(tmp_path)
    )
    assert model.final_step(registered).n_jobs == 1  # serving predicts on one thread
    frame = data.read_dataset(str(path))
    features, labels = data.split_features(frame, "label")
    parts = model.split(
        features,
        labels,
        task=Task.CLASSIFICATION,
        test_size=settings.test_size,
        seed=settings.random_seed,
    )
    forest = Family(Task.CLASSIFICATION, Estimator.RANDOM_FOREST)
    serial = model.build_pipeline(
        forest, hyperparameters, default_max_depth=settings.max_depth_limit
    )
    model.fit(serial, parts.x_train, parts.y_train, cpus=1)
    np.testing.assert_array_equal(registered.predict(parts.x_test), serial.predict(parts.x_test))
    np.testing.assert_allclose(
        registered.predict_proba(parts.x_test), serial.predict_proba(parts.x_test)
    )
