"""Core benchmarks: trigger → registered model, and alert fan-out over SSE.

    .venv/bin/python bench/core.py [--runs 3] [--clients 200] [--alerts 100]

Starts its own local platform on free ports (nothing else needs to run) and prints:
(a) seconds from POST /trigger_training to a registered model, against the same
    training and registration run in-process without Ray (the floor: what the Ray job
    costs on top);
(b) publish → receive latency of alerts to N SSE clients through /webhook, against the
    naive design of one blocking Redis XREAD connection per client, and whether every
    client got every alert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from mlops import sse
from mlops.cli.http import Api
from mlops.clients.redis import ALERT_STREAM, AlertStream, connect
from mlops.local.platform import (
    LocalPlatform,
    isolated_ray_ports,
    isolated_settings,
)
from mlops.ml.specs import TrainingSpec
from mlops.ml.train import train_and_register
from mlops.schemas import JobStatus
from mlops.settings import Settings


def token(settings: Settings) -> str | None:
    return settings.api_token.get_secret_value() if settings.api_token else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bench_training(api: str, settings: Settings, runs: int) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    client = Api(api, token(settings))
    for _ in range(runs):
        started = time.perf_counter()
        job_id = client.call("POST", "/trigger_training", json={"hyperparameters": {}})["job_id"]
        while not JobStatus(client.call("GET", f"/jobs/{job_id}")["status"]).is_terminal:
            time.sleep(0.05)
        ours.append(time.perf_counter() - started)
    peer: list[float] = []
    for i in range(runs):
        started = time.perf_counter()
        spec = TrainingSpec(f"inprocess-{i}", {}, settings.dataset_uri, settings.target_column)
        train_and_register(settings, spec)
        peer.append(time.perf_counter() - started)
    return ours, peer


async def _publish_all(settings: Settings, count: int) -> None:
    redis = connect(settings)
    stream = AlertStream(redis, max_len=settings.alert_history)
    for i in range(count):
        await stream.publish("info", f"bench {i}", kind="bench", data={"sent": time.time()})
        await asyncio.sleep(0.01)
    await redis.aclose()


async def _sse_client(api: str, ready: asyncio.Event, expect: int, got: list[float]) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=None)) as http:
        async with http.stream("GET", f"{api}/webhook") as response:
            async for event in sse.aevents(response.aiter_lines()):
                if event.event == "ready":
                    ready.set()
                elif event.event == "message":  # an alert
                    got.append(time.time() - event.json()["data"]["sent"])
                    if len(got) == expect:
                        return


async def _xread_client(settings: Settings, start_id: str, expect: int, got: list[float]) -> None:
    redis = connect(settings)
    last = start_id
    while len(got) < expect:
        for _, entries in await redis.xread({ALERT_STREAM: last}, block=5000, count=100):
            for entry_id, fields in entries:
                got.append(time.time() - json.loads(fields["data"])["sent"])
                last = entry_id
    await redis.aclose()


async def bench_fanout(api: str, settings: Settings, clients: int, alerts: int):
    results: dict[str, tuple[list[float], int]] = {}
    # Ours: N SSE clients on /webhook, one Redis reader in the API.
    received: list[list[float]] = [[] for _ in range(clients)]
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [
        asyncio.create_task(_sse_client(api, readies[i], alerts, received[i]))
        for i in range(clients)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    await _publish_all(settings, alerts)
    await asyncio.wait(tasks, timeout=30)
    results["ours: /webhook"] = ([x for r in received for x in r], _complete(received, alerts))
    # Peer: every client holds its own blocking XREAD connection to Redis.
    redis = connect(settings)
    start_id = await AlertStream(redis, max_len=settings.alert_history).last_id()
    await redis.aclose()
    received = [[] for _ in range(clients)]
    tasks = [
        asyncio.create_task(_xread_client(settings, start_id, alerts, received[i]))
        for i in range(clients)
    ]
    await asyncio.sleep(1)
    await _publish_all(settings, alerts)
    await asyncio.wait(tasks, timeout=30)
    results["peer: XREAD per client"] = (
        [x for r in received for x in r],
        _complete(received, alerts),
    )
    return results


def _complete(received: list[list[float]], expect: int) -> int:
    return sum(len(r) == expect for r in received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--alerts", type=int, default=100)
    args = parser.parse_args()
    # SIGTERM as an exception, so the platform below is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    with tempfile.TemporaryDirectory() as folder:
        settings = isolated_settings(Path(folder))
        platform = LocalPlatform(settings, ray_ports=isolated_ray_ports())
        platform.start()
        try:
            api = f"http://{settings.api_host}:{settings.api_port}"
            ours, peer = bench_training(api, settings, args.runs)
            fanout = asyncio.run(bench_fanout(api, settings, args.clients, args.alerts))
        finally:
            platform.stop()

    print(f"\n(a) trigger → registered model, iris, {args.runs} runs (seconds)")
    print(f"{'path':<34}{'median':>8}{'min':>8}{'max':>8}")
    for name, times in (("ours: API → Ray job → MLflow", ours), ("peer: in-process, no Ray", peer)):
        print(f"{name:<34}{statistics.median(times):>8.2f}{min(times):>8.2f}{max(times):>8.2f}")
    print(f"ratio ours/peer (median): {statistics.median(ours) / statistics.median(peer):.2f}")

    print(f"\n(b) alert fan-out: {args.clients} clients × {args.alerts} alerts (ms)")
    print(f"{'path':<26}{'p50':>8}{'p99':>8}{'max':>8}  clients with every alert")
    for name, (latencies, complete) in fanout.items():
        ms = [x * 1000 for x in latencies] or [float("nan")]
        print(
            f"{name:<26}{percentile(ms, 50):>8.1f}{percentile(ms, 99):>8.1f}{max(ms):>8.1f}"
            f"  {complete}/{args.clients}"
        )
    (ours_l, _), (peer_l, _) = fanout.values()
    if ours_l and peer_l:
        print(f"ratio ours/peer p99: {percentile(ours_l, 99) / percentile(peer_l, 99):.2f}")


if __name__ == "__main__":
    main()
