"""Alert fan-out at scale: N Server-Sent Events clients, every alert to every one.

    .venv/bin/python bench/core.py [--clients 1000] [--alerts 200] [--interval 0.1]

Starts its own local platform on free ports (nothing else needs to run), connects N
clients, publishes alerts one every INTERVAL seconds, and prints, for each path,
p50/p99/max publish → receive and how many clients got every alert:
- /webhook: straight to the API;
- nginx: the dashboard's /api/webhook, the path a browser takes;
- peer: the naive design, each client holding its own blocking XREAD connection.
For each SSE path it also prints the CPU time that the API and nginx spent per delivered
alert, and the memory each connected client costs them. With N clients on /webhook, the
API's CPU while they are all connected and no alert flows (keep-alive pings included).
The clients run on uvloop, as the API does, and their process freezes its garbage
collector's view once they are connected: the figures measure the servers, not the clients.

Training benchmarks are in bench/training.py.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import psutil
import uvloop

from mlops.clients.redis import AlertStream, connect
from mlops.clients.redis.keys import ALERT_STREAM
from mlops.contracts.alerts import AlertKind
from mlops.local.platform import (
    LocalPlatform,
    isolated_ray_ports,
    isolated_settings,
    raise_open_files_limit,
)
from mlops.settings.platform import PlatformSettings

IDLE_SECONDS = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _publish_all(settings: PlatformSettings, count: int, interval: float) -> None:
    redis = connect(settings)
    stream = AlertStream(redis, max_len=settings.alert_history)
    for i in range(count):
        await stream.publish("info", f"bench {i}", kind=AlertKind.WATCH, data={"sent": time.time()})
        await asyncio.sleep(interval)
    await redis.aclose()


_SENT = re.compile(rb'"sent":\s*([0-9.]+)')


class _SseClient(asyncio.Protocol):
    """A lean SSE client: a raw connection whose bytes are split into events and read
    for what the timing needs, so that N of them in one process measure the server,
    not the client. Each alert gives one latency; `done` resolves when all came."""

    def __init__(self, request: bytes, ready: asyncio.Event, expect: int, got: list[float]):
        self._request = request
        self._ready = ready
        self._expect = expect
        self._got = got
        self._pending = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        *events, self._pending = (self._pending + data).split(b"\n\n")
        for event in events:
            if b"event: ready" in event:
                self._ready.set()
            elif sent := _SENT.search(event):
                self._got.append(now - float(sent.group(1)))
        if len(self._got) >= self._expect:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        self._transport.close()


async def _sse_client(
    host: str, port: int, path: str, ready: asyncio.Event, expect: int, got: list[float]
) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: _SseClient(request.encode(), ready, expect, got), host, port
    )
    try:
        await client.done
    finally:
        client.close()


async def _xread_client(
    settings: PlatformSettings, start_id: str, expect: int, got: list[float]
) -> None:
    redis = connect(settings)
    last = start_id
    while len(got) < expect:
        for _, entries in await redis.xread({ALERT_STREAM: last}, block=5000, count=100):
            for entry_id, fields in entries:
                got.append(time.time() - json.loads(fields["data"])["sent"])
                last = entry_id
    await redis.aclose()


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def _rss(processes: list[psutil.Process]) -> int:
    return sum(p.memory_info().rss for p in processes)


async def over_sse(
    settings: PlatformSettings, port: int, path: str, args: argparse.Namespace, servers: Servers
) -> tuple[list[float], int, dict[str, float]]:
    """N clients on one SSE path; (latencies, complete clients, the servers' costs)."""
    rss_before = {name: _rss(processes) for name, processes in servers.items()}
    received: list[list[float]] = [[] for _ in range(args.clients)]
    readies = [asyncio.Event() for _ in range(args.clients)]
    tasks = []
    for i in range(args.clients):
        client = _sse_client("127.0.0.1", port, path, readies[i], args.alerts, received[i])
        tasks.append(asyncio.create_task(client))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # connect in waves, as dashboards open
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    gc.collect()
    gc.freeze()
    costs = {
        f"{name}_kib_per_client": (_rss(processes) - rss_before[name]) / args.clients / 1024
        for name, processes in servers.items()
    }  # the API's on the first path only: it keeps the memory the first clients used
    api = servers["api"]
    idle_from, wall_from = _cpu_seconds(api), time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)  # everyone connected, nothing published
    costs["idle_cpu_percent"] = (
        100 * (_cpu_seconds(api) - idle_from) / (time.monotonic() - wall_from)
    )
    cpu_before = {name: _cpu_seconds(processes) for name, processes in servers.items()}
    await _publish_all(settings, args.alerts, args.interval)
    await asyncio.wait(tasks, timeout=60)
    for task in tasks:
        task.cancel()
    deliveries = args.clients * args.alerts
    for name, processes in servers.items():
        spent = _cpu_seconds(processes) - cpu_before[name]
        costs[f"{name}_us_per_delivery"] = spent / deliveries * 1e6
    gc.unfreeze()
    complete = sum(len(r) == args.alerts for r in received)
    return [x for r in received for x in r], complete, costs


async def over_xread(
    settings: PlatformSettings, args: argparse.Namespace
) -> tuple[list[float], int]:
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


Servers = dict[str, list[psutil.Process]]


def servers_of(settings: PlatformSettings) -> Servers:
    """The platform's API process, and its nginx (master and workers) when it runs one."""
    found: Servers = {"api": [], "nginx": []}
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "mlops.main:create_app" in cmdline and str(settings.api_port) in cmdline:
            found["api"].append(process)
        elif process.info["name"] == "nginx" and str(settings.data_dir) in " ".join(cmdline):
            found["nginx"] += [process, *process.children()]  # the master, its workers
    if not found["api"]:
        raise SystemExit("the API process was not found")
    return {name: processes for name, processes in found.items() if processes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between alerts")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    raise_open_files_limit()  # a socket per client

    with tempfile.TemporaryDirectory() as folder:
        settings = isolated_settings(
            Path(folder), sse_max_clients=max(4000, args.clients + 100), auto_serve=False
        )
        platform = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
        platform.start()
        try:
            servers = servers_of(settings)
            direct = uvloop.run(
                over_sse(settings, settings.api_port, "/webhook", args, {"api": servers["api"]})
            )
            proxied = uvloop.run(
                over_sse(settings, settings.dashboard_port, "/api/webhook", args, servers)
            )
            peer = uvloop.run(over_xread(settings, args))
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
    print("cost of the fan-out (CPU per delivered alert, memory per connected client):")
    for path, costs in (("/webhook", direct[2]), ("nginx /api/webhook", proxied[2])):
        for server in ("api", "nginx"):
            if f"{server}_us_per_delivery" not in costs:
                continue
            line = f"  {path:<20}{server:<7}{costs[f'{server}_us_per_delivery']:6.1f} µs"
            if server == "nginx" or path == "/webhook":  # the API keeps what the first used
                line += f"  {costs[f'{server}_kib_per_client']:6.1f} KiB"
            print(line)
    print(
        f"API idle with {args.clients} streams: {direct[2]['idle_cpu_percent']:.1f}% of a CPU "
        f"({IDLE_SECONDS} s, keep-alive pings included)"
    )


if __name__ == "__main__":
    main()
