"""Training benchmarks: what a user waits for, and what Ray's parallelism pays.

    make bench-training      # or: .venv/bin/python bench/training.py [--runs 10]

Starts its own local platforms on free ports (nothing else needs to run) and prints:
(a) the user's path on the platform as `make up` starts it, serving on: POST
    /trigger_training of iris, each training promoting a new champion, timed to the
    record's terminal status as the CLI polls it; the first right after the platform
    started apart, then the median and the worst of --runs, and the phases' medians.
    Against, measured in the same run: a cold `python -c "import sklearn.ensemble,
    mlflow.sklearn"` (what a fresh process per training pays before any work) and an
    empty Ray job (Ray's own floor for a job, which a training no longer waits for).
    Then /inference's p99 at 8 connections with trainings running back to back,
    against the same without, and where the CPU went in both windows (per process:
    CPU seconds, and how long its main thread waited for a CPU);
(b) a large fit (make_classification, ROWS × 20, TREES trees of depth 12) on 1 CPU
    against every CPU of this machine, twice: with the trainer's tree builders started
    for the fit, then kept from it; fit time, speed-up, parallel efficiency
    (--only-fit: (b) alone);
(c) a search of 8 trials: wall time with max_concurrent_trials=1 against unlimited,
    and each search's phases (--only-search: (c) alone);
(d) a fit on a local cluster of two Ray nodes (a second `ray start --address` on this
    machine), and where Ray's state API says its trees were built.
(b)-(d) run on a platform without serving, which would share the CPUs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from cpu_share import CpuShare  # bench/cpu_share.py
from inference import ROW, Result, run_wrk  # bench/inference.py
from sklearn.datasets import make_classification

from mlops.cli.operations import poll_pause
from mlops.clients.ray_jobs import auth_headers
from mlops.contracts.placement import TRAINER_RESOURCE
from mlops.local import components
from mlops.local.platform import LocalPlatform, isolated_ray_ports, isolated_settings
from mlops.local.supervisor import Supervisor
from mlops.schemas import JobStatus
from mlops.settings.platform import PlatformSettings

CPUS = os.cpu_count() or 1
STARTED = f"{CPUS} CPUs, builders started"
KEPT = f"{CPUS} CPUs, builders kept"


class Api:
    """One API process of the platform, with its own settings."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self.url = f"http://{settings.api_host}:{settings.api_port}"
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def run(self, path: str, body: dict[str, Any], timeout: float = 1800) -> tuple[float, dict]:
        """POST, then poll the job as `mlops train --wait` does; (seconds to its end as
        the poller saw it, its record)."""
        started = time.perf_counter()
        job_id = self.http.post(f"{self.url}{path}", json=body).raise_for_status().json()["job_id"]
        while (elapsed := time.perf_counter() - started) < timeout:
            job = self.http.get(f"{self.url}/jobs/{job_id}").json()
            if JobStatus(job["status"]).is_terminal:
                if job["status"] != JobStatus.SUCCEEDED:
                    raise RuntimeError(f"{job_id} {job['status']}: {job.get('error')}")
                return elapsed, job
            time.sleep(poll_pause(elapsed))
        raise TimeoutError(f"{job_id} did not end in {timeout:g}s")


def extra_api(supervisor: Supervisor, settings: PlatformSettings, **overrides: Any) -> Api:
    """Another API process on the same Ray, MLflow and Valkey, with other settings."""
    from mlops.local.platform import free_port

    variant = settings.model_copy(update={"api_port": free_port(), **overrides})
    component = components.api(variant)
    env = {**variant.as_env(include_secrets=True), **component.env}
    supervisor.wait_ready([supervisor.start(dataclasses.replace(component, env=env))], 60)
    return Api(variant)


def ray_job_floor(settings: PlatformSettings, runs: int) -> list[float]:
    """An empty Ray job (`python -c pass`), submitted and seen finished: the Jobs API's
    own cost, which every training pays."""
    headers = auth_headers(settings.ray_token())
    times = []
    for i in range(runs):
        started = time.perf_counter()
        submission = f"floor-{time.time_ns()}-{i}"
        body = {"submission_id": submission, "entrypoint": "python -c pass",
                "entrypoint_num_cpus": 0}  # fmt: skip
        httpx.post(f"{settings.ray_address}/api/jobs/", json=body, headers=headers)
        while httpx.get(f"{settings.ray_address}/api/jobs/{submission}", headers=headers).json()[
            "status"
        ] not in ("SUCCEEDED", "FAILED"):
            time.sleep(0.05)
        times.append(time.perf_counter() - started)
    return times


# Seeded: every training builds the same forest, which ties with the champion and so
# is promoted (the gate takes an equal score): each run moves the champion.
IRIS = {"hyperparameters": {"n_estimators": 100, "random_state": 0}}


@dataclasses.dataclass
class UserPath:
    first: float
    runs: list[float]
    promoted: int
    phases: dict[str, float]  # medians
    import_yardstick: float
    ray_floor: float
    quiet: Result
    training: Result
    trainings_during: int
    other_model: Result
    cpu: dict[str, CpuShare]  # where the CPU went at 8 connections, by window


def cold_import() -> float:
    """A fresh process importing what a training needs (the page cache warm)."""
    command = [sys.executable, "-c", "import sklearn.ensemble, mlflow.sklearn"]
    subprocess.run(command, check=True)  # warms the page cache
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(command, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def served(api: Api) -> bool:
    reply = api.http.post(f"{api.url}/inference", json={"input_data": ROW})
    return reply.status_code == 200


def p99_while(api: Api, folder: Path, trained: str | None) -> tuple[Result, int, CpuShare]:
    """/inference of iris at 8 connections for 10 s, with trainings of model `trained`
    back to back (each promoting a new champion), or none; and where the CPU went."""
    stop, done = threading.Event(), []

    def train_on() -> None:
        while not stop.is_set():
            done.append(api.run("/trigger_training", {**IRIS, "model": trained})[0])

    trainer = threading.Thread(target=train_on) if trained else None
    if trainer:
        trainer.start()
        time.sleep(0.5)
    try:
        body = json.dumps({"input_data": ROW})
        with CpuShare() as share:
            result = run_wrk(f"{api.url}/inference", body, 8, 10, folder)
        return result, len(done), share
    finally:
        stop.set()
        if trainer:
            trainer.join()


def bench_user_path(api: Api, runs: int, folder: Path) -> UserPath:
    first, _ = api.run("/trigger_training", IRIS)  # as soon as the platform is up
    deadline = time.monotonic() + 120
    while not served(api):
        if time.monotonic() > deadline:
            raise TimeoutError("serving did not start")
        time.sleep(0.5)
    results = [api.run("/trigger_training", IRIS) for _ in range(runs)]
    phases: dict[str, list[float]] = {}
    for _, job in results:
        for name, seconds in (job["phases"] or {}).items():
            phases.setdefault(name, []).append(seconds)
    quiet, _, quiet_cpu = p99_while(api, folder, trained=None)
    during, trainings, training_cpu = p99_while(api, folder, trained="iris")
    # Another model, not served meanwhile: the same trainings without iris's reloads.
    iris = api.http.get(f"{api.url}/models/iris").json()["spec"]
    body = {"name": "iris-copy", "dataset_uri": iris["dataset_uri"], "target_column": "variety"}
    api.http.post(f"{api.url}/models", json=body).raise_for_status()
    other, _, _ = p99_while(api, folder, trained="iris-copy")
    return UserPath(
        first=first,
        runs=[seconds for seconds, _ in results],
        promoted=sum(bool(job["promoted"]) for _, job in results),
        phases={name: statistics.median(values) for name, values in phases.items()},
        import_yardstick=cold_import(),
        ray_floor=statistics.median(ray_job_floor(api.settings, 3)),
        quiet=quiet,
        training=during,
        trainings_during=trainings,
        other_model=other,
        cpu={"without training": quiet_cpu, "with trainings": training_cpu},
    )


def write_dataset(path: Path, rows: int) -> None:
    x, y = make_classification(n_samples=rows, n_features=20, n_informative=10, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    frame["label"] = y
    frame.to_parquet(path)


def define(api: Api, name: str, dataset: Path) -> str:
    """A model of `dataset` (the API trains a dataset only as a model's); its name."""
    body = {"name": name, "dataset_uri": str(dataset), "target_column": "label"}
    api.http.post(f"{api.url}/models", json=body).raise_for_status()
    return name


def bench_fit(serial: Api, parallel: Api, model: str, trees: int) -> dict[str, dict]:
    body = {
        "model": model,
        "hyperparameters": {"n_estimators": trees, "max_depth": 12, "random_state": 0},
    }
    # The trainer starts its tree builders for its first parallel fit and keeps them
    # for the next (MLOPS_TREE_BUILDERS_IDLE_SECONDS): both are measured.
    out = {}
    sides = (("1 CPU", serial), (STARTED, parallel), (KEPT, parallel))
    for name, api in sides:
        seconds, job = api.run("/trigger_training", body)
        out[name] = {"end_to_end": seconds, "fit": job["fit_seconds"], "cpus": job["cpus"]}
    return out


def second_node(settings: PlatformSettings, cpus: int) -> subprocess.Popen:
    """`ray start --address …` on this machine: a second node of the same cluster."""
    env = {
        **os.environ,
        **settings.secrets_env("redis_password", "s3_secret_access_key"),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(settings.data_dir / "ray-token"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
               f"--address=127.0.0.1:{settings.ray_gcs_port}", f"--num-cpus={cpus}",
               "--node-ip-address=127.0.0.1", "--disable-usage-stats",
               f"--temp-dir={components.ray_temp_dir(settings)}",
               # A trainer node: a fit's tree builders run only on those.
               f"--resources={json.dumps({TRAINER_RESOURCE: 1})}"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _state(settings: PlatformSettings, what: str) -> list[dict]:
    reply = httpx.get(
        f"{settings.ray_address}/api/v0/{what}",
        params={"limit": 10_000, "detail": "true"},
        headers=auth_headers(settings.ray_token()),
        timeout=60,
    )
    return reply.raise_for_status().json()["data"]["result"]["result"]


def bench_two_nodes(api: Api, model: str, trees: int) -> tuple[int, int, Counter]:
    """A parallel fit on two nodes; (nodes alive, its CPUs, ranges of trees built per node)."""

    settings = api.settings
    node = second_node(settings, cpus=2)
    try:
        deadline = time.monotonic() + 90
        while sum(n["state"] == "ALIVE" for n in _state(settings, "nodes")) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the second Ray node did not join")
            time.sleep(1)
        body = {
            "model": model,
            "hyperparameters": {"n_estimators": trees, "max_depth": 12, "random_state": 0},
        }
        _, job = api.run("/trigger_training", body)
        start = datetime.fromisoformat(job["started_at"]).timestamp() * 1000
        end = datetime.fromisoformat(job["finished_at"]).timestamp() * 1000
        time.sleep(2)  # task events reach the state API within a second or so
        tasks = [
            t
            for t in _state(settings, "tasks")
            if t["name"] == "TreeBuilder.fit_range"
            and start <= (t.get("start_time_ms") or 0) <= end
        ]
        nodes = sum(n["state"] == "ALIVE" for n in _state(settings, "nodes"))
        return nodes, job["cpus"], Counter(t["node_id"][:8] for t in tasks)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(60)


def trials_span(api: Api, job: dict) -> float:
    """Seconds from the search's first trial's start to its last one's end (the trials'
    MLflow child runs): the rest of the search's time is its fixed cost."""
    from mlflow import MlflowClient

    client = MlflowClient(api.settings.mlflow_tracking_uri)
    run = client.get_run(job["run_id"])
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{job['run_id']}'"
    )
    start = min(child.info.start_time for child in children)
    end = max(child.info.end_time for child in children)
    return (end - start) / 1000


def bench_search(api: Api, model: str) -> dict[str, tuple[float, dict]]:
    # Every trial the same work (one configuration), so the two runs differ only in
    # how many trials run at once; enough work that the trials, not the search's fixed
    # costs (its job, Tune, the refit and registration of the best), dominate.
    search = {
        "search_space": {"n_estimators": {"choice": [200]}, "max_depth": {"randint": [10, 11]}},
        "trials": 8,
        "model": model,
    }
    # A champion first, so that both searches' gates score one, as a user's would.
    api.run("/trigger_training", {"model": model, "hyperparameters": {"n_estimators": 50}})
    searches = {
        "max_concurrent_trials=1": api.run("/tune", {**search, "max_concurrent_trials": 1}),
        "unlimited": api.run("/tune", search),
    }
    return {
        name: (seconds, {**job, "trials_span": trials_span(api, job)})
        for name, (seconds, job) in searches.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--only-user-path", action="store_true", help="(a) alone")
    parser.add_argument("--only-fit", action="store_true", help="(b) alone")
    parser.add_argument("--only-search", action="store_true", help="(c) alone")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    with tempfile.TemporaryDirectory() as folder:
        settings = isolated_settings(Path(folder) / "user")  # as `make up` runs it
        if not (args.only_fit or args.only_search):
            platform = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
            platform.start()
            try:
                user = bench_user_path(Api(settings), args.runs, Path(folder))
            finally:
                platform.stop()
            report_user_path(user, args.runs)
        if args.only_user_path:
            return
        # No serving (it would share the CPUs); Ray declares the machine's real cores,
        # and a fit may use all of them.
        settings = isolated_settings(
            Path(folder) / "fits", auto_serve=False, ray_cpus=CPUS, training_max_cpus=CPUS
        )
        platform = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
        supervisor = Supervisor(Path(folder) / "extra-logs")
        platform.start()
        try:
            main_api = Api(settings)
            serial = extra_api(supervisor, settings, training_max_cpus=1)
            large, mid = settings.data_dir / "large.parquet", settings.data_dir / "mid.parquet"
            write_dataset(large, args.rows)
            write_dataset(mid, 40_000)
            if args.only_search:
                report_search(bench_search(main_api, define(main_api, "mid", mid)))
                return
            fit = bench_fit(serial, main_api, define(main_api, "large", large), args.trees)
            if args.only_fit:
                report_fit(fit, args.rows, args.trees)
                return
            search = bench_search(main_api, define(main_api, "mid", mid))
            # As many CPUs as both nodes have free: the head alone cannot hold the pool.
            wide = extra_api(supervisor, settings, training_max_cpus=64, parallel_fit_min_work=0)
            nodes, cpus, per_node = bench_two_nodes(wide, "mid", trees=60)
        finally:
            supervisor.stop_all()
            platform.stop()

    report_fit(fit, args.rows, args.trees)
    report_search(search)

    print(f"\n(d) two Ray nodes on this machine: {nodes} alive during a fit on {cpus} CPUs")
    for node_id, count in per_node.most_common():
        print(f"node {node_id}…: {count} ranges of trees built")


def report_fit(fit: dict[str, dict], rows: int, trees: int) -> None:
    print(f"\n(b) fit of {rows:,} × 20, {trees} trees of depth 12 (seconds)")
    print(f"{'CPUs':<32}{'fit':>8}{'end to end':>12}")
    for name, row in fit.items():
        print(f"{name:<32}{row['fit']:>8.1f}{row['end_to_end']:>12.1f}")
    one = fit["1 CPU"]
    for name in (STARTED, KEPT):
        many = fit[name]
        speedup = one["fit"] / many["fit"]
        print(
            f"{name}: speed-up {speedup:.2f}× on {many['cpus']} CPUs, "
            f"efficiency {speedup / many['cpus']:.0%}"
        )


def report_search(search: dict[str, tuple[float, dict]]) -> None:
    print("\n(c) a search of 8 trials (seconds, trigger → registered)")
    for name, (seconds, job) in search.items():
        phases = " · ".join(f"{k} {v:.1f}" for k, v in (job["phases"] or {}).items())
        print(f"{name:<26}{seconds:>8.1f}   phases: {phases}")
    names = ("max_concurrent_trials=1", "unlimited")
    serial, parallel = (search[name][0] for name in names)
    print(f"parallel trials: {serial / parallel:.2f}× faster (target ≥ 1.8×)")
    spans = [search[name][1]["trials_span"] for name in names]
    print(
        f"the trials, first start to last end: {spans[0]:.1f} s and {spans[1]:.1f} s "
        f"({spans[0] / spans[1]:.2f}×); the rest, the search's fixed cost: "
        f"{serial - spans[0]:.1f} s and {parallel - spans[1]:.1f} s"
    )


def report_user_path(user: UserPath, runs: int) -> None:
    yardstick = user.import_yardstick
    median, worst = statistics.median(user.runs), max(user.runs)
    print(
        f"\n(a) the user's path: trigger → succeeded for iris, serving on, as the CLI polls "
        f"({runs} runs, {user.promoted} promoting a new champion; seconds)"
    )
    rows = [
        ("first training after start", user.first, 2.2),
        (f"median of the next {runs}", median, 0.85),
        (f"worst of the next {runs}", worst, 1.3),
    ]
    for name, seconds, target in rows:
        print(
            f"{name:<30}{seconds:>7.2f}   {seconds / yardstick:.2f}× the cold import "
            f"(target ≤ {target}×)"
        )
    print(f"{'cold import (yardstick)':<30}{yardstick:>7.2f}")
    print(f"{'an empty Ray job (Ray floor)':<30}{user.ray_floor:>7.2f}")
    print("phases, medians: " + " · ".join(f"{k} {v:.2f}" for k, v in user.phases.items()))
    quiet, busy = user.quiet, user.training
    print(
        f"/inference at 8 connections: p99 {quiet.p99_ms:.1f} ms without training, "
        f"{busy.p99_ms:.1f} ms with {user.trainings_during} trainings meanwhile "
        f"({busy.p99_ms / quiet.p99_ms:.2f}×, target ≤ 1.5×); errors {quiet.errors + busy.errors}"
    )
    other = user.other_model
    print(
        f"  the same with trainings of another model (iris's replica reloads nothing): "
        f"p99 {other.p99_ms:.1f} ms ({other.p99_ms / quiet.p99_ms:.2f}×); errors {other.errors}"
    )
    for title, share in user.cpu.items():
        share.report(title)


if __name__ == "__main__":
    main()
