"""The closed loop's costs: recording every prediction, a shadow at 100 %, and taking
labels back.

    make bench-loop           # or: .venv/bin/python bench/loop.py [--seconds 10] [--rounds 3]

Starts its own local platform on free ports (the settings `make up` uses), trains two
versions of iris and serves the first, then:

- recording: POST /inference through two API processes on the same Serve application,
  the platform's (recording on) and a second one started here with
  MLOPS_RECORD_PREDICTIONS=false; wrk at 32 connections (req/s) and at 1 (p50), the two
  alternated for --rounds rounds; medians compared.
- shadow: p50 at 1 connection with no rollout and with the second version in shadow at
  100 %, alternated the same way (the shadow's copy is sent after each answer).
- feedback: labels for recorded predictions, POST /feedback in batches of 1,000 from one
  client, then from four at once: labels per second.
"""

from __future__ import annotations

import argparse
import json
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
from inference import ROW, Result, run_wrk, train_and_serve  # bench/inference.py

from mlops.cli.http import Api
from mlops.local.platform import LocalPlatform, free_port, isolated_ray_ports, isolated_settings
from mlops.schemas import JobStatus
from mlops.settings.platform import PlatformSettings

BATCH = 1000


def _client(settings: PlatformSettings, url: str) -> Api:
    return Api(url, settings.api_token.get_secret_value() if settings.api_token else None)


def _train_second(api: Api) -> str:
    body = {"hyperparameters": {"random_state": 1, "n_estimators": 50}}
    job_id = api.call("POST", "/trigger_training", json=body)["job_id"]
    while not JobStatus((job := api.call("GET", f"/jobs/{job_id}"))["status"]).is_terminal:
        time.sleep(0.2)
    return str(job["model_version"])


def _start_api(settings: PlatformSettings, port: int, log: Path) -> subprocess.Popen:
    """A second API on the same platform, recording nothing and deploying nothing."""
    env = {
        **os.environ,
        **settings.as_env(include_secrets=True),
        "MLOPS_RECORD_PREDICTIONS": "false",
        "MLOPS_AUTO_SERVE": "false",
        "MLOPS_API_PORT": str(port),
    }
    command = [sys.executable, "-m", "uvicorn", "mlops.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).is_success:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"the second API did not start; see {log}")


def _alternated(
    runs: Mapping[str, tuple[str, Callable[[], None] | None]],
    connections: int,
    seconds: int,
    rounds: int,
    folder: Path,
) -> dict[str, list[Result]]:
    """Each side in turn, `rounds` times; `runs` maps a side to (url, a setup callable)."""
    body = json.dumps({"input_data": ROW})
    results: dict[str, list[Result]] = {side: [] for side in runs}
    for _ in range(rounds):
        for side, (url, setup) in runs.items():
            if setup is not None:
                setup()
            results[side].append(run_wrk(url, body, connections, seconds, folder))
    return results


def _median(results: list[Result], field: str) -> float:
    return statistics.median(getattr(r, field) for r in results)


def _feedback_rate(api_url: str, settings: PlatformSettings, clients: int) -> float:
    """Labels a second for 20 batches of 1,000, sent by `clients` at once."""
    api = _client(settings, api_url)
    ids = [
        p["prediction_id"]
        for p in api.call("GET", "/models/iris/predictions?limit=1000")["predictions"]
    ]
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
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of each comparison")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: `apt-get install wrk` (or `brew install wrk`)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as folder:
        settings = isolated_settings(Path(folder))
        platform = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
        platform.start()
        second: subprocess.Popen | None = None
        try:
            api_url = f"http://{settings.api_host}:{settings.api_port}"
            api = _client(settings, api_url)
            champion = train_and_serve(api_url, settings)
            challenger = _train_second(api)
            port = free_port()
            second = _start_api(settings, port, Path(folder) / "api-unrecorded.log")
            unrecorded = f"http://127.0.0.1:{port}/inference"
            recorded = f"{api_url}/inference"
            for url in (recorded, unrecorded):  # warm up
                run_wrk(url, json.dumps({"input_data": ROW}), 8, 3, Path(folder))
            sides = {"recorded": (recorded, None), "unrecorded": (unrecorded, None)}
            busy = _alternated(sides, 32, args.seconds, args.rounds, Path(folder))
            alone = _alternated(sides, 1, args.seconds, args.rounds, Path(folder))

            def no_rollout() -> None:
                report = api.call("GET", "/models/iris/rollouts")
                if report["active"]:
                    api.call("DELETE", "/models/iris/rollouts")
                time.sleep(settings.rollout_refresh_seconds + 0.5)

            def shadow() -> None:
                spec = {"version": challenger, "mode": "shadow", "percent": 100}
                api.call("POST", "/models/iris/rollouts", json=spec)
                time.sleep(settings.rollout_refresh_seconds + 0.5)

            shadowing = _alternated(
                {"no rollout": (recorded, no_rollout), "shadow 100%": (recorded, shadow)},
                1,
                args.seconds,
                args.rounds,
                Path(folder),
            )
            no_rollout()
            rates = {clients: _feedback_rate(api_url, settings, clients) for clients in (1, 4)}
        finally:
            if second is not None:
                os.killpg(second.pid, signal.SIGTERM)
                second.wait(30)
            platform.stop()
    _report(champion, challenger, busy, alone, shadowing, rates, args)


def _report(
    champion: str,
    challenger: str,
    busy: dict[str, list[Result]],
    alone: dict[str, list[Result]],
    shadowing: dict[str, list[Result]],
    rates: dict[int, float],
    args: argparse.Namespace,
) -> None:
    print(
        f"\niris version {champion} (champion), {challenger} (shadow); {args.rounds} alternated "
        f"runs of {args.seconds}s each, medians; wrk, {os.cpu_count()} cores"
    )
    for side in busy:
        errors = sum(r.errors for r in busy[side] + alone[side])
        print(
            f"{side:<11} 32 connections {_median(busy[side], 'requests_per_s'):7.0f} req/s   "
            f"1 connection p50 {_median(alone[side], 'p50_ms'):6.2f} ms   errors {errors}"
        )
    rate = _median(busy["recorded"], "requests_per_s") / _median(
        busy["unrecorded"], "requests_per_s"
    )
    p50 = _median(alone["recorded"], "p50_ms") / _median(alone["unrecorded"], "p50_ms")
    print(f"recording on/off: req/s {rate:.3f}x, p50 {p50:.3f}x (target: within 5%)")
    for side, results in shadowing.items():
        errors = sum(r.errors for r in results)
        print(f"{side:<11} 1 connection p50 {_median(results, 'p50_ms'):6.2f} ms   errors {errors}")
    ratio = _median(shadowing["shadow 100%"], "p50_ms") / _median(shadowing["no rollout"], "p50_ms")
    print(f"shadow at 100%: champion's p50 {ratio:.3f}x no rollout (target: within 10%)")
    for clients, rate_per_s in rates.items():
        print(f"feedback, batches of {BATCH}, {clients} client(s): {rate_per_s:,.0f} labels/s")
    print("(target: at least 5,000 labels/s)")


if __name__ == "__main__":
    main()
