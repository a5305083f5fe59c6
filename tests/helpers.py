"""Small helpers the tests share: free ports, polling, and an SSE reader."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from mlops import sse
from mlops.local.platform import LocalPlatform, free_port, isolated_settings
from mlops.schemas import JobStatus
from mlops.settings.platform import PlatformSettings
from mlops.sse import SseEvent

__all__ = ["free_port"]  # tests import it from here, with the other helpers

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a worker thread.

    Not asyncio.run() here: Playwright's sync API leaves this thread's event loop marked
    as running, and asyncio.run() refuses to start inside a running loop.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


NOBODY = 65534  # a user with no folder of its own, for what another user meets


def as_user(uid: int, call: Callable[[], T], timeout: float = 30) -> T:
    """`call()` in a child process forked from this one, that runs as `uid` (only root may
    do that): its result; what it raised fails the test, with its traceback."""
    fork = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = fork.Queue()

    def child() -> None:
        os.setuid(uid)
        try:
            results.put((True, call()))
        except BaseException:
            results.put((False, traceback.format_exc()))

    process = fork.Process(target=child)
    process.start()
    try:
        returned, result = results.get(timeout=timeout)
    finally:
        process.join(timeout)
    if not returned:
        pytest.fail(f"as uid {uid}:\n{result}")
    return result


def redis_db_url(settings: PlatformSettings, db: int) -> str:
    """The session's Redis URL with another database number: a test's own keys."""
    return f"{settings.redis_url.rsplit('/', 1)[0]}/{db}"


def on_redis_db(settings: PlatformSettings, db: int) -> PlatformSettings:
    return settings.model_copy(update={"redis_url": redis_db_url(settings, db)})


def wait_for(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.25, what: str = "condition"
) -> Any:
    """Poll check() until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_for_job(api: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """The job record once it reaches a final status."""

    def finished() -> dict[str, Any] | None:
        job = api.get(f"/jobs/{job_id}").raise_for_status().json()
        return job if JobStatus(job["status"]).is_terminal else None

    return wait_for(finished, timeout=timeout, what=f"job {job_id} to finish")


def component_process(platform: LocalPlatform, name: str) -> psutil.Process:
    """The process of the platform's component `name` (`ray`, `mlflow`, `api`, …)."""
    return next(
        psutil.Process(running.process.pid)
        for running in platform.supervisor.running
        if running.component.name == name
    )


def serve_a_champion(api: httpx.Client) -> None:
    """The default model of the API `api` answers with a champion: trained first when it
    has none (the Serve application is deployed by the session's API)."""
    if api.get("/get_metrics").json()["champion_version"] is None:
        job_id = api.post("/trigger_training", json={"hyperparameters": {}}).json()["job_id"]
        assert wait_for_job(api, job_id)["status"] == "succeeded"
    row = {"input_data": [5.1, 3.5, 1.4, 0.2], "sla_seconds": 30}
    wait_for(
        lambda: api.post("/inference", json=row, timeout=40).is_success,
        timeout=120,
        what=f"a champion to be served by {api.base_url}",
    )


class SseReader:
    """Reads one /webhook stream on a thread; events arrive in `events`.

    With `reconnect`, it behaves as a browser's EventSource: when the stream ends or
    fails, it waits the server's `retry` interval and reconnects with Last-Event-ID.
    """

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, *, reconnect: bool = False
    ) -> None:
        self.events: queue.Queue[SseEvent] = queue.Queue()
        self.connections = 0
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._url = url
        self._headers = headers or {}
        self._reconnect = reconnect
        self._closed = threading.Event()
        self._last_id = ""
        self._retry_ms = 2000
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._read()
            if not self._reconnect or self._closed.wait(self._retry_ms / 1000):
                return

    def _read(self) -> None:
        headers = dict(self._headers)
        if self._last_id:
            headers["Last-Event-ID"] = self._last_id
        try:
            with self._client.stream("GET", self._url, headers=headers) as response:
                if response.status_code != 200:
                    return
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                self.connections += 1
                for event in sse.events(response.iter_lines()):
                    self._last_id = event.id or self._last_id
                    self._retry_ms = event.retry_ms or self._retry_ms
                    self.events.put(event)
        except (httpx.HTTPError, RuntimeError):
            pass  # dropped, or closed by the test

    def next(self, kind: str = "message", timeout: float = 10) -> SseEvent:
        """The next event of the given kind (alerts are `message`), skipping others."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event.event == kind:
                return event
        pytest.fail(f"no {kind!r} event within {timeout}s")

    def close(self) -> None:
        """Leave as a browser tab does: the server sees the connection end at once (a
        close from this thread alone would wait for the reading thread's `recv`)."""
        self._closed.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._client.close()


class PredictionLoad:
    """Clients predicting one row in a loop until the block ends: the version and time
    of each answer, and every failure."""

    def __init__(self, api_url: str, clients: int = 1, **predict: Any) -> None:
        self.answers: list[tuple[str, float]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(api_url, predict)) for _ in range(clients)
        ]

    def _run(self, api_url: str, predict: dict[str, Any]) -> None:
        with api_client(api_url) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                response = client.post(
                    "/inference", json={"input_data": [6.7, 3.0, 5.2, 2.3], **predict}
                )
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
                else:
                    elapsed = time.monotonic() - started
                    self.answers.append((response.json()["model_version"], elapsed))

    def __enter__(self) -> PredictionLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


# The platforms the tests start require it on writes, as `make up` does.
API_TOKEN = "test-api-token-5f3c9a1e"
# The test platforms' Ray and Redis credentials, as `make up` generates them.
RAY_TOKEN = "test-ray-token-2b7d41c9"
REDIS_PASSWORD = "test-redis-password-8e0a"  # pragma: allowlist secret (test only)


def api_client(base_url: str, token: str | None = API_TOKEN, **kwargs: Any) -> httpx.Client:
    """A client of the API that sends the test platform's token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, timeout=30, headers=headers, **kwargs)


MLOPS = str(Path(sys.executable).with_name("mlops"))  # the CLI, as installed


def ray_headers() -> dict[str, str]:
    """What Ray's Jobs and Serve APIs ask of the test platforms' callers."""
    return {"Authorization": f"Bearer {RAY_TOKEN}"}


def run_cli(
    api_url: str,
    *args: str,
    token: str | None = API_TOKEN,
    data_dir: str | None = "/nonexistent",
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`mlops ARGS` as a user runs it, against `api_url`: with MLOPS_API_TOKEN `token`
    and MLOPS_DATA_DIR `data_dir` (each unset when None), from `cwd`."""
    env = {**os.environ, "MLOPS_API_URL": api_url}
    for name, value in (("MLOPS_API_TOKEN", token), ("MLOPS_DATA_DIR", data_dir)):
        env.pop(name, None)
        if value:
            env[name] = value
    return subprocess.run(
        [MLOPS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


class Relay:
    """A TCP relay to a real server on this machine (`target_port`), at `port`: copies
    bytes between clients and the server while `up`; cut, it drops every connection and
    closes new ones at once. Tests stand it between a component and a server to take
    the server away and give it back."""

    def __init__(self, target_port: int, *, up: bool = True) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = up
        self.loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while self.up and (chunk := await reader.read(65536)):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    def cut(self) -> None:
        def drop() -> None:
            self.up = False
            for writer in self._writers:
                writer.close()
            self._writers.clear()

        self.loop.call_soon_threadsafe(drop)

    def restore(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self, "up", True)

    def start(self) -> None:
        self._thread.start()
        listening = asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(listening, self.loop).result(timeout=10)

    def stop(self) -> None:
        """Closes the listener, cancels every copy in flight and closes the loop."""

        async def shutdown() -> None:
            self._server.close()
            copies = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for copy in copies:
                copy.cancel()
            await asyncio.gather(*copies, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


S3_BUCKET = "mlops"  # the test platform's bucket, on its S3 server (conftest.s3_url)


def s3_client(url: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # pragma: allowlist secret (the test S3 takes any)
        region_name="us-east-1",
    )


def s3_answers(client: Any) -> bool:
    """Whether the S3 server behind a boto3 client answers yet."""
    try:
        client.list_buckets()
    except Exception:
        return False
    return True


def platform_settings(data_dir: Path, **overrides: Any) -> PlatformSettings:
    """A test platform: free ports, the tests' token, and short periods (a schedule
    "minute" of one second; jobs reconciled every half second)."""
    values: dict[str, Any] = {
        "api_token": API_TOKEN,
        "ray_auth_token": RAY_TOKEN,
        "redis_password": REDIS_PASSWORD,
        "job_poll_seconds": 0.5,
        "schedule_minute_seconds": 1.0,
        "rollout_check_seconds": 0.5,
        "live_check_seconds": 1.0,
        "live_min_labels": 20,
        **overrides,
    }
    return isolated_settings(data_dir, **values)
