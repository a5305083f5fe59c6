"""The closed loop's costs: recording every prediction, a shadow at 100 %, and taking
labels back.

    make bench-loop    # or: .venv/bin/python bench/loop.py [--seconds 2] [--turns 3] [--sets 12]

Starts its own local platform on free ports (the settings `make up` uses), trains two
versions of iris and serves the first, then:

- recording: POST /inference through API processes started alike here on the same
  Serve application: one with MLOPS_RECORD_PREDICTIONS=true, two with false. wrk at
  32 connections (req/s) and at 1 (p50), in short runs that take turns (each side in
  each place of a turn as often), so a drift of the machine's speed falls on every
  side alike. Each of --sets sets is a fresh set of processes (a process's own luck,
  its memory's layout or its core, is not recording's): recording against the mean of
  the two unrecorded, and the two against each other (what the run can tell apart),
  as the medians of the sets' ratios, and their mean with its 95 % interval.
- shadow: p50 at 1 connection with no rollout and with the second version in shadow at
  100 %, in turns the same way, at least 8 of each (the shadow's copy is sent after
  each answer).
- feedback: labels for recorded predictions, POST /feedback in batches of 1,000 from one
  client, then from four at once: labels per second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from inference import ROW, Result, run_wrk, train_and_serve  # bench/inference.py
from scipy.stats import t

from mlops.cli.http import Api
from mlops.local.platform import LocalPlatform, free_port, isolated_ray_ports, isolated_settings
from mlops.schemas import JobStatus
from mlops.settings.platform import PlatformSettings

BATCH = 1000
SHADOW_TURNS = 8  # at least: the shadow is one pair of sides on one process


def _client(settings: PlatformSettings, url: str) -> Api:
    return Api(url, settings.api_token.get_secret_value() if settings.api_token else None)


def _train_second(api: Api) -> str:
    body = {"hyperparameters": {"random_state": 1, "n_estimators": 50}}
    job_id = api.call("POST", "/trigger_training", json=body)["job_id"]
    while not JobStatus((job := api.call("GET", f"/jobs/{job_id}"))["status"]).is_terminal:
        time.sleep(0.2)
    return str(job["model_version"])


def _spawn_api(
    settings: PlatformSettings, port: int, log: Path, *, record: bool
) -> subprocess.Popen:
    """Another API on the same platform, recording predictions or not, deploying
    nothing: the sides of the comparison start alike."""
    env = {
        **os.environ,
        **settings.as_env(include_secrets=True),
        "MLOPS_RECORD_PREDICTIONS": "true" if record else "false",
        "MLOPS_AUTO_SERVE": "false",
        "MLOPS_API_PORT": str(port),
    }
    command = [sys.executable, "-m", "uvicorn", "mlops.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=out, start_new_session=True)


def _wait_healthy(port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).is_success:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"an API did not start; see {log}")


# The recording comparison's sides: whether each API records. The second unrecorded one
# measures the comparison itself: what this run tells apart that is not recording.
SIDES = {"recorded": True, "unrecorded": False, "unrecorded again": False}
Runs = dict[str, list[Result]]


def _start_set(
    settings: PlatformSettings, folder: Path, apis: list[subprocess.Popen]
) -> dict[str, str]:
    """An API for each of SIDES, started together and warmed up: their /inference URLs."""
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(SIDES):  # three free ports, none twice
        ports = {side: free_port() for side in SIDES}
    for side, record in SIDES.items():
        log = folder / f"api-{ports[side]}.log"
        apis.append(_spawn_api(settings, ports[side], log, record=record))
    for port in ports.values():
        _wait_healthy(port, folder / f"api-{port}.log")
    urls = {side: f"http://127.0.0.1:{port}/inference" for side, port in ports.items()}
    for url in urls.values():
        run_wrk(url, json.dumps({"input_data": ROW}), 8, 3, folder)
    return urls


def _stop(apis: list[subprocess.Popen]) -> None:
    while apis:
        process = apis.pop()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def _alternated(
    runs: Mapping[str, tuple[str, Callable[[], None] | None]],
    connections: int,
    seconds: int,
    turns: int,
    folder: Path,
    cpu: dict[str, list[float]] | None = None,
) -> Runs:
    """Each side in turn, `turns` times; `runs` maps a side to (url, a setup callable).
    The order rotates turn by turn (ABC, BCA, CAB; with two sides AB, BA): every side
    takes every place in a turn as often, over a multiple of the sides' number of turns,
    and with three sides or more none runs twice in a row. With `cpu`, the CPU seconds
    spent per 1,000 requests by the API the side's URL names and by the processes
    serving it."""
    body = json.dumps({"input_data": ROW})
    results: Runs = {side: [] for side in runs}
    order = list(runs.items())
    for turn in range(turns):
        shift = turn % len(order)
        for side, (url, setup) in order[shift:] + order[:shift]:
            if setup is not None:
                setup()
            before = _cpu_seconds()
            result = run_wrk(url, body, connections, seconds, folder)
            results[side].append(result)
            if cpu is not None:
                spent = _spent(before, _cpu_seconds())
                thousands = result.requests_per_s * seconds / 1000
                port = url.split(":")[-1].split("/")[0]
                for name, seconds_spent in spent.items():
                    if name.startswith("api :"):
                        if name != f"api :{port}":
                            continue  # another side's, idle
                        name = "api"
                    cpu.setdefault(f"{side}: {name}", []).append(seconds_spent / thousands)
    return results


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each serving process, by pid, with its kind: each API (by
    its port), Valkey, Serve's replicas and proxy."""
    spent: dict[int, tuple[str, float]] = {}
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        line = " ".join(process.info["cmdline"] or [])
        if "mlops.main:create_app" in line:
            kind = "api :" + line.split("--port ")[1].split()[0]
        elif "valkey" in line or "redis-server" in line:
            kind = "valkey"
        elif "ServeReplica" in line or "ServeController" in line or "haproxy" in line:
            kind = "serve"
        else:
            continue
        times = process.info["cpu_times"]
        if times is not None:
            spent[process.pid] = (kind, times.user + times.system)
    return spent


def _spent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds by kind between two readings: a process started since counts whole,
    one gone since (a child between its fork and its exec, say) not at all."""
    spent: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        earlier = before[pid][1] if pid in before else 0.0
        spent[kind] = spent.get(kind, 0.0) + seconds - earlier
    return spent


def _median(results: list[Result], field: str) -> float:
    return statistics.median(getattr(r, field) for r in results)


def _ratios(sets: list[Runs], side: str, against: tuple[str, ...], field: str) -> list[float]:
    """`side` against the mean of the `against` sides, set by set, by their runs' medians."""
    return [
        _median(runs[side], field) / statistics.mean(_median(runs[a], field) for a in against)
        for runs in sets
    ]


def _feedback_rate(api_url: str, settings: PlatformSettings, clients: int) -> float:
    """Labels a second for 20 batches of 1,000, sent by `clients` at once."""
    api = _client(settings, api_url)
    listed = api.call("GET", "/models/iris/predictions?limit=1000")["predictions"]
    ids = [p["prediction_id"] for p in listed if p["arm"] == "champion"]
    batch = {"items": [{"prediction_id": i, "label": "Virginica"} for i in ids[:BATCH]]}
    api.call("POST", "/feedback", json=batch)  # warm up

    def send(_: int) -> None:
        with httpx.Client(base_url=api_url, timeout=60) as http:
            token = settings.api_token.get_secret_value() if settings.api_token else ""
            for _ in range(20 // clients):
                answer = http.post(
                    "/feedback", json=batch, headers={"Authorization": f"Bearer {token}"}
                )
                answer.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, range(clients)))
    return (20 // clients) * clients * len(batch["items"]) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=2, help="per wrk run")
    parser.add_argument("--turns", type=int, default=3, help="runs of each side, in turns")
    parser.add_argument("--sets", type=int, default=12, help="fresh sets of APIs (recording)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: `apt-get install wrk` (or `brew install wrk`)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as folder:
        settings = isolated_settings(Path(folder))
        platform = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
        platform.start()
        apis: list[subprocess.Popen] = []
        try:
            api_url = f"http://{settings.api_host}:{settings.api_port}"
            api = _client(settings, api_url)
            first = train_and_serve(api_url, settings)
            second = _train_second(api)
            # The second may be promoted (the gate takes an equal one): the other shadows.
            champion = api.call("GET", "/models/iris")["champion"]["version"]
            challenger = first if champion == second else second
            cpu: dict[str, list[float]] = {}
            busy: list[Runs] = []  # a set's runs at 32 connections
            alone: list[Runs] = []  # and at 1
            for _ in range(args.sets):
                urls = _start_set(settings, Path(folder), apis)
                sides = {side: (url, None) for side, url in urls.items()}
                busy.append(_alternated(sides, 32, args.seconds, args.turns, Path(folder), cpu))
                alone.append(_alternated(sides, 1, args.seconds, args.turns, Path(folder)))
                _stop(apis)
            shadowing = _shadowing(api, settings, challenger, args, Path(folder))
            # Fresh predictions of the champion alone, to label.
            run_wrk(f"{api_url}/inference", json.dumps({"input_data": ROW}), 8, 3, Path(folder))
            rates = {clients: _feedback_rate(api_url, settings, clients) for clients in (1, 4)}
        finally:
            _stop(apis)
            platform.stop()
    print(
        f"\niris version {champion} (champion), {challenger} (shadow); wrk, "
        f"{os.cpu_count()} cores; {args.turns} runs of {args.seconds}s a side, in turns"
    )
    _report_recording(busy, alone, args.sets)
    _report_shadow(shadowing)
    for clients, rate_per_s in rates.items():
        print(f"feedback, batches of {BATCH}, {clients} client(s): {rate_per_s:,.0f} labels/s")
    print("(target: at least 5,000 labels/s)")
    print("CPU seconds per 1,000 requests at 32 connections (medians):")
    for name, values in sorted(cpu.items()):
        print(f"  {name:<34} {statistics.median(values):.3f}")


def _shadowing(
    api: Api, settings: PlatformSettings, challenger: str, args: argparse.Namespace, folder: Path
) -> Runs:
    """p50 at 1 connection on the platform's API, with no rollout and with `challenger`
    in shadow at 100 %, in turns."""

    def no_rollout() -> None:
        if api.call("GET", "/models/iris/rollouts")["active"]:
            api.call("DELETE", "/models/iris/rollouts")
            time.sleep(settings.rollout_refresh_seconds + 0.5)

    def shadow() -> None:
        if api.call("GET", "/models/iris/rollouts")["active"]:
            return  # from the turn before (the order reverses)
        spec = {"version": challenger, "mode": "shadow", "percent": 100}
        api.call("POST", "/models/iris/rollouts", json=spec)
        time.sleep(settings.rollout_refresh_seconds + 0.5)

    url = f"http://{settings.api_host}:{settings.api_port}/inference"  # reads the rollout
    sides = {"no rollout": (url, no_rollout), "shadow 100%": (url, shadow)}
    try:
        return _alternated(sides, 1, args.seconds, max(args.turns, SHADOW_TURNS), folder)
    finally:
        no_rollout()


def _report_recording(busy: list[Runs], alone: list[Runs], sets: int) -> None:
    print(f"recording: {sets} sets of APIs, each side's median run")
    for side in SIDES:
        errors = sum(r.errors for runs in busy + alone for r in runs[side])
        throughput = statistics.median(_median(runs[side], "requests_per_s") for runs in busy)
        p50 = statistics.median(_median(runs[side], "p50_ms") for runs in alone)
        print(
            f"  {side:<17} 32 connections {throughput:7.0f} req/s   "
            f"1 connection p50 {p50:6.2f} ms   errors {errors}"
        )
    # Recording against both unrecorded APIs (two draws of a process's own luck, not
    # one); the two against each other show what the run can tell apart.
    comparisons = (
        ("recorded", ("unrecorded", "unrecorded again"), "recording on/off"),
        ("unrecorded again", ("unrecorded",), "unrecorded A/A"),
    )
    for side, against, what in comparisons:
        throughputs = _ratios(busy, side, against, "requests_per_s")
        p50s = _ratios(alone, side, against, "p50_ms")
        print(
            f"{what}, medians of the sets' ratios: req/s {statistics.median(throughputs):.3f}x, "
            f"p50 {statistics.median(p50s):.3f}x"
            + (" (target: within 5%)" if side == "recorded" else " (what this run can resolve)")
        )
        print(f"  sets' req/s ratios: {' '.join(f'{r:.3f}' for r in throughputs)}")
        print(f"  sets' p50 ratios:   {' '.join(f'{r:.3f}' for r in p50s)}")
        if sets > 1:
            print(
                f"  the sets' mean and its 95% interval: req/s {_interval(throughputs)}, "
                f"p50 {_interval(p50s)}"
            )


def _interval(ratios: list[float]) -> str:
    """The mean of the sets' ratios and Student's 95 % interval around it: each set is a
    fresh draw of processes, so the sets, not the runs, are the samples."""
    mean = statistics.mean(ratios)
    half = t.ppf(0.975, len(ratios) - 1) * statistics.stdev(ratios) / math.sqrt(len(ratios))
    return f"{mean:.3f}x ({mean - half:.3f}-{mean + half:.3f})"


def _report_shadow(shadowing: Runs) -> None:
    for side, results in shadowing.items():
        errors = sum(r.errors for r in results)
        print(f"{side:<11} 1 connection p50 {_median(results, 'p50_ms'):6.2f} ms   errors {errors}")
    ratio = _median(shadowing["shadow 100%"], "p50_ms") / _median(shadowing["no rollout"], "p50_ms")
    print(f"shadow at 100%: champion's p50 {ratio:.3f}x no rollout (target: within 10%)")


if __name__ == "__main__":
    main()
