"""Many models: one Serve application for 20 models against one `mlflow models serve`
process per model, under Zipf-distributed traffic.

    make bench-models         # or: .venv/bin/python bench/models.py [--seconds 30]

Starts its own local platform on free ports (the settings `make up` uses), defines 20
models (classification and regression, every estimator family, data generated here) and
trains each once, plus UNTOUCHED more that no traffic touches. Then, for each side in turn,
32 connections for `--seconds`: 9 on the hottest model (its share under Zipf s=1.1
over 20 models) and 23 spread over the other 19 by the same law, so the hottest
model's latency is measured apart. Prints requests/s, p50, p99 and errors per side,
the total resident memory of each side's serving processes, and:

- hot p99 against the single-model p99 of `POST /inference` at 32 connections (what
  `make bench-inference` measures as "ours"), in the same run;
- the first answer of each untouched model (its version loaded on demand) against a
  warm Python process loading that version from MLflow (`mlflow.pyfunc.load_model`),
  the medians compared.

- ours: POST /inference {"model": …} → the API → the Serve application `models`.
- peer: one `mlflow models serve --env-manager local` process per model behind an
  nginx router (/m/<name>/invocations → that model's port), as a user would run them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
from inference import Result, run_wrk, start_peer, train_and_serve  # bench/inference.py

from mlops.cli.http import Api, ApiError
from mlops.local.platform import LocalPlatform, free_port, isolated_ray_ports, isolated_settings
from mlops.schemas import JobStatus
from mlops.settings.platform import PlatformSettings

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
MODELS = 20
UNTOUCHED = 5  # cold loads measured, one model each (several families)
ZIPF_S = 1.1
CONNECTIONS = 32
FEATURES = 8
FAMILIES = {
    "classification": [
        ("random_forest", {"n_estimators": 20}),
        ("extra_trees", {"n_estimators": 20}),
        ("hist_gradient_boosting", {"max_iter": 20}),
        ("logistic_regression", {"max_iter": 200}),
    ],
    "regression": [
        ("random_forest", {"n_estimators": 20}),
        ("extra_trees", {"n_estimators": 20}),
        ("hist_gradient_boosting", {"max_iter": 20}),
        ("ridge", {}),
    ],
}
# Each connection runs its own Lua state: `request` picks a model by the table's weights.
WRK_SCRIPT = """
local paths = {paths}
local bodies = {bodies}
local cdf = {cdf}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local r = math.random()
  for i = 1, #cdf do
    if r <= cdf[i] then return wrk.format(nil, paths[i], nil, bodies[i]) end
  end
  return wrk.format(nil, paths[#paths], nil, bodies[#bodies])
end
"""


@dataclass(frozen=True)
class Model:
    name: str
    task: str
    estimator: str
    hyperparameters: dict
    columns: list[str]
    row: list[float]


def _lua(items: list[str]) -> str:
    return "{" + ", ".join("[==[" + item + "]==]" for item in items) + "}"


def zipf_weights(count: int) -> list[float]:
    weights = [1 / rank**ZIPF_S for rank in range(1, count + 1)]
    return [w / sum(weights) for w in weights]


def define_models(client: Api, settings: PlatformSettings) -> list[Model]:
    """MODELS + UNTOUCHED models over generated data, each family in turn; the last
    UNTOUCHED are the ones no traffic touches."""
    from sklearn.datasets import make_classification, make_regression

    models = []
    for index in range(MODELS + UNTOUCHED):
        task = "classification" if index % 2 == 0 else "regression"
        estimator, hyperparameters = FAMILIES[task][(index // 2) % 4]
        if task == "classification":
            x, y = make_classification(400, FEATURES, n_informative=5, random_state=index)
        else:
            x, y = make_regression(400, FEATURES, noise=5.0, random_state=index)
        columns = [f"f{i}" for i in range(FEATURES)]
        frame = pd.DataFrame(x, columns=columns)
        frame["target"] = [f"c{v}" for v in y] if task == "classification" else y
        path = settings.data_dir / f"bench-{index}.csv"
        frame.to_csv(path, index=False)
        name = f"bench-{index:02d}-{task[:3]}-{estimator.replace('_', '-')}"
        gate = {"metric": "accuracy" if task == "classification" else "r2"}
        client.call("POST", "/models", json={
            "name": name, "dataset_uri": str(path), "target_column": "target",
            "task": task, "estimator": estimator, "gate": gate,
        })  # fmt: skip
        row = [round(float(v), 4) for v in x[0]]
        models.append(Model(name, task, estimator, hyperparameters, columns, row))
    return models


def train_all(client: Api, models: list[Model]) -> dict[str, str]:
    """Every model trained once, as many at a time as the platform admits; their versions."""
    pending, versions = list(models), {}
    running: dict[str, Model] = {}
    while pending or running:
        while pending:
            model = pending[0]
            body = {"model": model.name, "hyperparameters": model.hyperparameters}
            try:
                running[client.call("POST", "/trigger_training", json=body)["job_id"]] = model
            except ApiError as exc:
                if not exc.message.startswith("429"):
                    raise
                break
            pending.pop(0)
        time.sleep(1)
        for job_id, model in list(running.items()):
            job = client.call("GET", f"/jobs/{job_id}")
            if JobStatus(job["status"]).is_terminal:
                if job["status"] != JobStatus.SUCCEEDED or not job["promoted"]:
                    raise SystemExit(f"{model.name}: {job['status']} {job.get('error')}")
                versions[model.name] = job["model_version"]
                del running[job_id]
    return versions


def start_router(ports: dict[str, int], folder: Path) -> tuple[subprocess.Popen, int]:
    """nginx in front of the peer processes: /m/<name>/… → that model's server."""
    port = free_port()
    locations = "\n".join(
        f"    location /m/{name}/ {{ proxy_pass http://127.0.0.1:{peer}/; }}"
        for name, peer in ports.items()
    )
    config = folder / "router.conf"
    config.write_text(f"""
worker_processes 2;
pid {folder}/router.pid;
error_log {folder}/router-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
{locations}
  }}
}}
""")
    router = subprocess.Popen(
        [str(NGINX), "-c", str(config), "-p", str(folder), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    time.sleep(1)
    return router, port


def start_peers(
    settings: PlatformSettings, models: list[Model], versions: dict[str, str], folder: Path
) -> tuple[list[subprocess.Popen], dict[str, int]]:
    ports = {model.name: free_port() for model in models}

    def one(model: Model) -> subprocess.Popen:
        registered = settings.model_copy(update={"model_name": model.name})
        log = folder / f"peer-{model.name}.log"
        return start_peer(registered, versions[model.name], ports[model.name], log)

    with ThreadPoolExecutor(4) as pool:  # four starting at once on two cores
        return list(pool.map(one, models)), ports


def resident_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        for member in [process, *process.children(recursive=True)]:
            try:
                total += member.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return total / 2**20


def our_serving_processes(platform: LocalPlatform) -> list[psutil.Process]:
    """The API and Ray's Serve processes (controller, proxy, replicas, HAProxy)."""
    api = next(r.process for r in platform.supervisor.running if r.component.name == "api")
    found = [psutil.Process(api.pid)]
    for process in psutil.process_iter(["cmdline", "name"]):
        text = " ".join(process.info["cmdline"] or []) + " " + (process.info["name"] or "")
        if any(key in text for key in ("ServeReplica", "ServeController", "ProxyActor", "haproxy")):
            found.append(process)
    return found


def zipf_load(
    bodies_paths: list[tuple[str, str]], base: str, seconds: int, folder: Path, tag: str
) -> tuple[Result, Result]:
    """The hottest target on 9 connections and the rest by Zipf on 23, at once."""
    weights = zipf_weights(len(bodies_paths))
    hot = round(CONNECTIONS * weights[0])
    tail = bodies_paths[1:]
    tail_weights = np.cumsum([w / sum(weights[1:]) for w in weights[1:]]).tolist()
    scripts = {}
    for part, items, cdf in (("hot", bodies_paths[:1], [1.0]), ("tail", tail, tail_weights)):
        script = folder / f"{tag}-{part}.lua"
        script.write_text(WRK_SCRIPT.format(
            paths=_lua([p for _, p in items]), bodies=_lua([b for b, _ in items]),
            cdf="{" + ", ".join(f"{c:.6f}" for c in cdf) + "}",
        ))  # fmt: skip
        scripts[part] = script
    with ThreadPoolExecutor(2) as pool:
        hot_run = pool.submit(run_wrk, base, "", hot, seconds, folder, scripts["hot"])
        tail_run = pool.submit(
            run_wrk, base, "", CONNECTIONS - hot, seconds, folder, scripts["tail"]
        )
        return hot_run.result(), tail_run.result()


def _post(url: str, body: str) -> None:
    headers = {"Content-Type": "application/json"}
    httpx.post(url, content=body, headers=headers, timeout=120).raise_for_status()


def first_answer_seconds(api: str, model: Model) -> float:
    started = time.perf_counter()
    reply = httpx.post(f"{api}/inference", json={"model": model.name, "input_data": model.row},
                       timeout=120)  # fmt: skip
    reply.raise_for_status()
    return time.perf_counter() - started


def warm_load_seconds(settings: PlatformSettings, versions: list[str], warm: str) -> list[float]:
    """How long this process, warmed by loading `warm`, takes to load each version."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    # Each download in a folder of ours: MLflow would leave its own in /tmp.
    with tempfile.TemporaryDirectory() as folder:
        mlflow.pyfunc.load_model(f"models:/{warm}", dst_path=f"{folder}/warm")  # imports warm
        seconds: list[float] = []
        for version in versions:
            started = time.perf_counter()
            mlflow.pyfunc.load_model(f"models:/{version}", dst_path=f"{folder}/{len(seconds)}")
            seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    if not shutil.which("wrk") or not NGINX:
        raise SystemExit("wrk and nginx are needed: apt-get install wrk nginx-light")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        settings = isolated_settings(folder)
        platform = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
        platform.start()
        helpers: list[subprocess.Popen] = []
        try:
            api = f"http://{settings.api_host}:{settings.api_port}"
            token = settings.api_token.get_secret_value() if settings.api_token else None
            client = Api(api, token)
            train_and_serve(api, settings)  # iris's champion, and Serve deployed
            everything = define_models(client, settings)
            started = time.monotonic()
            versions = train_all(client, everything)
            print(f"{len(everything)} models trained in {time.monotonic() - started:.0f} s")
            models, untouched = everything[:MODELS], everything[MODELS:]
            ours = [
                (json.dumps({"model": m.name, "input_data": m.row}), "/inference") for m in models
            ]
            for body, path in ours:  # each served once before the clock starts
                _post(api + path, body)
            run_wrk(f"{api}/inference", ours[0][0], 8, 3, folder)  # warm up
            single = run_wrk(f"{api}/inference", ours[0][0], CONNECTIONS, 10, folder)
            zipf_load(ours, api, 5, folder, "ours")  # warm up
            ours_hot, ours_tail = zipf_load(ours, api, args.seconds, folder, "ours")
            ours_mb = resident_mb(our_serving_processes(platform))
            time.sleep(3)  # the load's last requests done
            first = [first_answer_seconds(api, model) for model in untouched]
            cold_versions = [f"{model.name}/{versions[model.name]}" for model in untouched]
            warm = warm_load_seconds(settings, cold_versions, f"{models[0].name}/1")
            peers, ports = start_peers(settings, models, versions, folder)
            helpers += peers
            router, router_port = start_router(ports, folder)
            helpers.append(router)
            peer = [
                (json.dumps({"dataframe_split": {"columns": m.columns, "data": [m.row]}}),
                 f"/m/{m.name}/invocations")
                for m in models
            ]  # fmt: skip
            base = f"http://127.0.0.1:{router_port}"
            for body, path in peer:
                _post(base + path, body)
            zipf_load(peer, base, 5, folder, "peer")  # warm up
            peer_hot, peer_tail = zipf_load(peer, base, args.seconds, folder, "peer")
            peer_mb = resident_mb([psutil.Process(p.pid) for p in peers])
        finally:
            for helper in helpers:
                os.killpg(helper.pid, signal.SIGTERM)
                helper.wait(30)
            platform.stop()
    report(args.seconds, single, (ours_hot, ours_tail), (peer_hot, peer_tail),
           (ours_mb, peer_mb), (first, warm))  # fmt: skip


def report(
    seconds: int,
    single: Result,
    ours: tuple[Result, Result],
    peer: tuple[Result, Result],
    memory: tuple[float, float],
    cold: tuple[list[float], list[float]],
) -> None:
    print(f"\n{MODELS} models, Zipf s={ZIPF_S}, {CONNECTIONS} connections for {seconds}s, "
          f"wrk, {os.cpu_count()} cores")  # fmt: skip
    print(f"{'side':<6}{'part':<6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    totals = {}
    for side, (hot, tail) in (("ours", ours), ("peer", peer)):
        for part, r in (("hot", hot), ("tail", tail)):
            print(f"{side:<6}{part:<6}{r.requests_per_s:>9.0f}{r.p50_ms:>9.2f}"
                  f"{r.p99_ms:>9.2f}{r.errors:>8}")  # fmt: skip
        totals[side] = hot.requests_per_s + tail.requests_per_s
    ours_mb, peer_mb = memory
    first, warm = (float(np.median(seconds)) for seconds in cold)
    print(f"ours/peer req/s: {totals['ours'] / totals['peer']:.1f}x "
          f"({totals['ours']:.0f} against {totals['peer']:.0f})")  # fmt: skip
    print(f"resident memory: ours {ours_mb:.0f} MiB, peer {peer_mb:.0f} MiB "
          f"(ours/peer {ours_mb / peer_mb:.2f})")  # fmt: skip
    print(f"one model alone: {single.requests_per_s:.0f} req/s, p50 {single.p50_ms:.2f} ms, "
          f"p99 {single.p99_ms:.2f} ms, {single.errors} errors")  # fmt: skip
    print(f"hot-model p99 {ours[0].p99_ms:.2f} ms against one model alone {single.p99_ms:.2f} ms "
          f"({ours[0].p99_ms / single.p99_ms:.2f}x)")  # fmt: skip
    print(f"an untouched model's first answer {first * 1000:.0f} ms against a warm process "
          f"loading it from MLflow {warm * 1000:.0f} ms ({first / warm:.2f}x; medians of "
          f"{len(cold[0])}: ours {_ms(cold[0])}, peer {_ms(cold[1])})")  # fmt: skip


def _ms(seconds: list[float]) -> str:
    return "/".join(f"{s * 1000:.0f}" for s in seconds)


if __name__ == "__main__":
    main()
