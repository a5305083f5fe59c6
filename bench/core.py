"""Alert fan-out at scale: N Server-Sent Events clients, every alert to every one.

    .venv/bin/python bench/core.py [--clients 1000] [--alerts 50] [--interval 0.1]

Starts its own local platform on free ports (nothing else needs to run), connects N
clients, publishes alerts one every INTERVAL seconds, and prints, for each path,
p50/p99/max publish → receive and how many clients got every alert:
- /webhook: straight to the API;
- nginx: the dashboard's /api/webhook, the path a browser takes;
- peer: the naive design, each client holding its own blocking XREAD connection.
With N clients on /webhook it also prints the API's memory per connected client and its
CPU while they are all connected and no alert flows (keep-alive pings included).

Training benchmarks are in bench/training.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

from mlops.clients.redis import ALERT_STREAM, AlertStream, connect
from mlops.local.platform import (
    LocalPlatform,
    isolated_ray_ports,
    isolated_settings,
    raise_open_files_limit,
)
from mlops.settings import Settings

IDLE_SECONDS = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _publish_all(settings: Settings, count: int, interval: float) -> None:
    redis = connect(settings)
    stream = AlertStream(redis, max_len=settings.alert_history)
    for i in range(count):
        await stream.publish("info", f"bench {i}", kind="bench", data={"sent": time.time()})
        await asyncio.sleep(interval)
    await redis.aclose()


async def _sse_client(
    host: str, port: int, path: str, ready: asyncio.Event, expect: int, got: list[float]
) -> None:
    """A lean SSE client on a raw connection, so that N of them in one process measure
    the server, not the client: each `data:` line of an alert gives one latency."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        while len(got) < expect:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"event: ready"):
                ready.set()
            elif line.startswith(b"data: {") and b'"sent"' in line:
                got.append(time.time() - json.loads(line[6:])["data"]["sent"])
    finally:
        writer.close()


async def _xread_client(settings: Settings, start_id: str, expect: int, got: list[float]) -> None:
    redis = connect(settings)
    last = start_id
    while len(got) < expect:
        for _, entries in await redis.xread({ALERT_STREAM: last}, block=5000, count=100):
            for entry_id, fields in entries:
                got.append(time.time() - json.loads(fields["data"])["sent"])
                last = entry_id
    await redis.aclose()


async def over_sse(
    settings: Settings, port: int, path: str, args: argparse.Namespace, api: psutil.Process
) -> tuple[list[float], int, dict[str, float]]:
    """N clients on one SSE path; (latencies, complete clients, the API's footprint)."""
    rss_before = api.memory_info().rss
    received: list[list[float]] = [[] for _ in range(args.clients)]
    readies = [asyncio.Event() for _ in range(args.clients)]
    tasks = []
    for i in range(args.clients):
        client = _sse_client("127.0.0.1", port, path, readies[i], args.alerts, received[i])
        tasks.append(asyncio.create_task(client))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # connect in waves, as dashboards open
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    footprint = {"rss_per_client_kib": (api.memory_info().rss - rss_before) / args.clients / 1024}
    cpu_before, wall_before = api.cpu_times(), time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)  # everyone connected, nothing published
    cpu_after = api.cpu_times()
    busy = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    footprint["idle_cpu_percent"] = 100 * busy / (time.monotonic() - wall_before)
    await _publish_all(settings, args.alerts, args.interval)
    await asyncio.wait(tasks, timeout=60)
    for task in tasks:
        task.cancel()
    complete = sum(len(r) == args.alerts for r in received)
    return [x for r in received for x in r], complete, footprint


async def over_xread(settings: Settings, args: argparse.Namespace) -> tuple[list[float], int]:
    redis = connect(settings)
    start_id = await AlertStream(redis, max_len=settings.alert_history).last_id()
    await redis.aclose()
    received: list[list[float]] = [[] for _ in range(args.clients)]
    tasks = [
        asyncio.create_task(_xread_client(settings, start_id, args.alerts, received[i]))
        for i in range(args.clients)
    ]
    await asyncio.sleep(2)
    await _publish_all(settings, args.alerts, args.interval)
    await asyncio.wait(tasks, timeout=60)
    for task in tasks:
        task.cancel()
    return [x for r in received for x in r], sum(len(r) == args.alerts for r in received)


def api_process(settings: Settings) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "mlops.main:create_app" in cmdline and str(settings.api_port) in cmdline:
            return process
    raise SystemExit("the API process was not found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between alerts")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    raise_open_files_limit()  # a socket per client

    with tempfile.TemporaryDirectory() as folder:
        settings = isolated_settings(
            Path(folder), sse_max_clients=max(4000, args.clients + 100), auto_serve=False
        )
        platform = LocalPlatform(settings, ray_ports=isolated_ray_ports())
        platform.start()
        try:
            api = api_process(settings)
            direct = asyncio.run(over_sse(settings, settings.api_port, "/webhook", args, api))
            proxied = asyncio.run(
                over_sse(settings, settings.dashboard_port, "/api/webhook", args, api)
            )
            peer = asyncio.run(over_xread(settings, args))
        finally:
            platform.stop()

    print(
        f"\nalert fan-out: {args.clients} clients × {args.alerts} alerts, one every "
        f"{args.interval * 1000:.0f} ms (publish → receive, ms)"
    )
    print(f"{'path':<26}{'p50':>8}{'p99':>8}{'max':>8}  clients with every alert")
    rows = {
        "ours: /webhook": direct[:2],
        "ours: nginx /api/webhook": proxied[:2],
        "peer: XREAD per client": peer,
    }
    for name, (latencies, complete) in rows.items():
        ms = [x * 1000 for x in latencies] or [float("nan")]
        print(
            f"{name:<26}{percentile(ms, 50):>8.1f}{percentile(ms, 99):>8.1f}{max(ms):>8.1f}"
            f"  {complete}/{args.clients}"
        )
    footprint = direct[2]
    print(
        f"API with {args.clients} streams: {footprint['rss_per_client_kib']:.1f} KiB per client,"
        f" {footprint['idle_cpu_percent']:.1f}% of a CPU while idle ({IDLE_SECONDS} s)"
    )


if __name__ == "__main__":
    main()
