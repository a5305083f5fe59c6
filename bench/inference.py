"""Inference throughput: POST /inference against `mlflow models serve` and the floor,
same model.

    make bench-inference      # or: .venv/bin/python bench/inference.py [--seconds 10]

Starts its own local platform on free ports, trains and registers one model, serves
it every way below, then drives each with wrk (the same load generator, same row) at
concurrency 1, 8 and 32 for a fixed time. Prints req/s, p50, p99 and errors per
target, and the ratios ours/peer and ours/floor per concurrency.

- ours: POST /inference on the API → Ray Serve proxy → replica (batched, ONNX form).
- serve: the Serve proxy → replica alone (what the API adds is ours − serve).
- health: GET /health on the API (its own HTTP handling and middleware, no Serve call).
- peer: `mlflow models serve --env-manager local` on the same registered version.
- floor: the same compiled model behind a bare ASGI endpoint (bench/onnx_floor.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlops.cli.http import Api
from mlops.clients.serve_admin import ServeAdmin
from mlops.contracts.serve import MULTIPLEX_HEADER
from mlops.contracts.version_card import COMPILED_DIR, COMPILED_FILE, TAG_CLASSES, VersionCard
from mlops.local.platform import (
    LocalPlatform,
    free_port,
    isolated_ray_ports,
    isolated_settings,
)
from mlops.ml.data import IRIS_FEATURES
from mlops.schemas import JobStatus
from mlops.services.serve_deployment import deploy, endpoint
from mlops.settings.platform import PlatformSettings

ROW = [6.7, 3.0, 5.2, 2.3]
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["{multiplex}"] = "{served}"
"""


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    url: str,
    body: str,
    connections: int,
    seconds: int,
    folder: Path,
    script: Path | None = None,
    served: str = "",
) -> Result:
    """POST `body` (a GET when it is empty) for `seconds` over `connections`; or what a
    Lua `script` of wrk's asks for."""
    if script is None and body:
        script = folder / "post.lua"
        # Serve's routing header, for the "serve" target (the others ignore it).
        script.write_text(WRK_SCRIPT.format(body=body, multiplex=MULTIPLEX_HEADER, served=served))
    threads = 1 if connections < 8 else 2
    post = ["-s", str(script)] if script else []
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *post, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(map(int, socket.groups())) if socket else 0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Result(rate, _ms(latency["50"]), _ms(latency["99"]), errors)


def train_and_serve(api: str, settings: PlatformSettings) -> str:
    token = settings.api_token.get_secret_value() if settings.api_token else None
    client = Api(api, token)
    # Seeded: the same forest every run, so every run compares the same compiled model
    # (an unseeded forest's ONNX form is now and then refused by its verification).
    body = {"hyperparameters": {"random_state": 0}}
    job_id = client.call("POST", "/trigger_training", json=body)["job_id"]
    while not JobStatus((job := client.call("GET", f"/jobs/{job_id}"))["status"]).is_terminal:
        time.sleep(0.2)
    if job["status"] != JobStatus.SUCCEEDED:
        raise SystemExit(f"training failed: {job['error']}")

    async def _deploy() -> None:
        async with httpx.AsyncClient() as http:
            await deploy(ServeAdmin(http, settings.ray_address, settings.ray_token()), settings)

    asyncio.run(_deploy())
    return job["model_version"]


def _wait_up(url: str, what: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"{what} did not start; see {log}")


def start_floor(
    settings: PlatformSettings, version: str, port: int, folder: Path
) -> subprocess.Popen:
    """bench/onnx_floor.py on the version's compiled form, one uvicorn process."""
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    found = client.get_model_version(settings.model_name, version)
    card = VersionCard.from_tags(found.tags)
    if card.compiled != "onnx":
        raise SystemExit(f"version {version} has no compiled form: {card.compiled_reason}")
    model = mlflow.artifacts.download_artifacts(
        run_id=found.run_id,
        artifact_path=f"{COMPILED_DIR}/{COMPILED_FILE}",
        tracking_uri=settings.mlflow_tracking_uri,
        dst_path=str(folder),
    )
    env = {
        **os.environ,
        "MLOPS_FLOOR_MODEL": model,
        "MLOPS_FLOOR_CLASSES": found.tags[TAG_CLASSES],
    }
    log = folder / "floor.log"
    floor = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent),
         "--factory", "onnx_floor:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    _wait_up(f"http://127.0.0.1:{port}/", "the ONNX floor", log)
    return floor


def start_peer(settings: PlatformSettings, version: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        # The peer execs `uvicorn` by name: this environment's must be first on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    peer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{settings.model_name}/{version}",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait_up(f"http://127.0.0.1:{port}/ping", "mlflow models serve", log)
    return peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per target and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: `apt-get install wrk` (or `brew install wrk`)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    ours_body = json.dumps({"input_data": ROW})
    peer_body = json.dumps({"dataframe_split": {"columns": IRIS_FEATURES, "data": [ROW]}})
    results: dict[tuple[str, int], Result] = {}
    with tempfile.TemporaryDirectory() as folder:
        settings = isolated_settings(Path(folder))
        platform = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
        platform.start()
        helpers: list[subprocess.Popen] = []
        try:
            api = f"http://{settings.api_host}:{settings.api_port}"
            version = train_and_serve(api, settings)
            peer_port, floor_port = free_port(), free_port()
            helpers.append(start_peer(settings, version, peer_port, Path(folder) / "peer.log"))
            helpers.append(start_floor(settings, version, floor_port, Path(folder)))
            # Straight to Serve: the default model's champion, in Serve's contract.
            served = settings.model_name
            serve_body = json.dumps({"groups": [{"model": served, "rows": [ROW]}]})
            targets = {
                "ours": (f"{api}/inference", ours_body),
                "serve": (endpoint(settings), serve_body),
                "health": (f"{api}/health", ""),
                "peer": (f"http://127.0.0.1:{peer_port}/invocations", peer_body),
                "floor": (f"http://127.0.0.1:{floor_port}/", ours_body),
            }
            for name, (url, body) in targets.items():
                run_wrk(url, body, 8, 3, Path(folder), served=served)  # warm up
                for connections in args.concurrency:
                    results[name, connections] = run_wrk(
                        url, body, connections, args.seconds, Path(folder), served=served
                    )
        finally:
            for helper in helpers:
                os.killpg(helper.pid, signal.SIGTERM)
                helper.wait(30)
            platform.stop()
    report(results, args.concurrency, version, args.seconds)


def report(
    results: dict[tuple[str, int], Result], concurrency: list[int], version: str, seconds: int
) -> None:
    print(f"\nmodel version {version}, {seconds}s per run, wrk, {os.cpu_count()} cores")
    print(f"{'conc':>5} {'target':<7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for connections in concurrency:
        for name in ("ours", "serve", "health", "peer", "floor"):
            r = results[name, connections]
            print(
                f"{connections:>5} {name:<7}{r.requests_per_s:>9.0f}{r.p50_ms:>9.2f}"
                f"{r.p99_ms:>9.2f}{r.errors:>8}"
            )
        ours = results["ours", connections].requests_per_s
        to_peer = ours / results["peer", connections].requests_per_s
        to_floor = ours / results["floor", connections].requests_per_s
        print(f"{'':>5} ours/peer req/s: {to_peer:.1f}x, ours/floor req/s: {to_floor:.2f}x")


if __name__ == "__main__":
    main()
