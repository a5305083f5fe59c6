"""A job that ends during a Redis outage longer than it waits still gets its outcome.

The extra API and its training job reach the session's real Valkey through a TCP relay
the test can cut (the only stand-in here: it injects the outage). The relay is cut as
soon as the job is submitted, so the job trains, registers and promotes a version, and
gives up recording it after MLOPS_REDIS_WAIT_SECONDS (Ray shows the job failed). Once
the relay is back, the API's reconciler reads the outcome back from MLflow.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import free_port, ray_headers, wait_for, wait_for_job

from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


class Relay:
    """Copies bytes between clients and Redis while `up`; cut, it drops every
    connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
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


@pytest.fixture()
def relay(settings: PlatformSettings) -> Iterator[Relay]:
    relay = Relay(urlsplit(settings.redis_url).port or 6379)
    relay.start()
    yield relay
    relay.stop()


def test_an_outcome_given_up_in_a_redis_outage_is_read_back_from_mlflow(
    start_api, settings: PlatformSettings, relay: Relay
) -> None:
    name = f"outage_{uuid.uuid4().hex[:8]}"
    api, _ = start_api(
        model_name=name,
        experiment_name=name,
        redis_url=f"redis://127.0.0.1:{relay.port}/15",
        redis_wait_seconds=2,
    )
    accepted = api.post("/trigger_training", json={"hyperparameters": {"random_state": 1}})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]

    relay.cut()
    ray_job = f"{settings.ray_address}/api/jobs/{job_id}"
    wait_for(
        lambda: httpx.get(ray_job, headers=ray_headers()).json()["status"] == "FAILED",
        timeout=180,
        what="the job to give up recording its outcome",
    )
    relay.restore()
    job = wait_for_job(api, job_id)

    assert job["status"] == "succeeded", job
    assert job["model_version"] and job["promoted"] is True
    assert job["accuracy"] == pytest.approx(0.9667, abs=1e-3)
    moves = api.get("/models/iris/history").json()["moves"]
    assert [(m["to_version"], m["by"]) for m in moves] == [(job["model_version"], job_id)]
    alerts = api.get("/alerts", params={"limit": 50}).json()["alerts"]
    recovered = [a for a in alerts if (a["data"] or {}).get("job_id") == job_id]
    assert len(recovered) == 1 and "read back from MLflow" in recovered[0]["text"]
