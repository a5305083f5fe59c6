"""A submission Ray takes but never confirms keeps its job record.

Between an extra API and the session's real Ray sits a small HTTP proxy (the only
stand-in here: it injects the fault). It passes every call through, except that it
holds back Ray's answer to `POST /api/jobs/` (Ray ran the job) or drops that request
(Ray never saw it). The API's call times out after 10 s either way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web
from helpers import free_port, wait_for_job

from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


class SilentRay:
    """Forwards to Ray; `mode` says what becomes of a job submission."""

    def __init__(self, ray_address: str) -> None:
        self.ray = ray_address.rstrip("/")
        self.mode = "forward-then-hang"  # or "hang"
        self.port = free_port()
        self.loop = asyncio.new_event_loop()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        submission = request.method == "POST" and request.path == "/api/jobs/"
        if submission and self.mode == "hang":
            await asyncio.sleep(3600)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, f"{self.ray}{request.path_qs}", data=body, headers=headers
            ) as answer,
        ):
            payload = await answer.read()
            if submission:
                await asyncio.sleep(3600)  # Ray took it; its answer never arrives
            return web.Response(
                body=payload, status=answer.status, content_type=answer.content_type
            )

    def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app)

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self.port)
            self.loop.run_until_complete(site.start())
            self.loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()

    def stop(self) -> None:
        """Cancel the answers it holds back, then stop its loop."""

        async def cancel_held() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(cancel_held(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture()
def silent_ray(settings: PlatformSettings) -> Iterator[SilentRay]:
    proxy = SilentRay(settings.ray_address)
    proxy.start()
    yield proxy
    proxy.stop()


def test_a_job_ray_took_without_answering_is_accepted_and_runs(start_api, silent_ray) -> None:
    api, _ = start_api(redis_db=15, ray_address=f"http://127.0.0.1:{silent_ray.port}")

    accepted = api.post("/trigger_training", json={"hyperparameters": {}}, timeout=60)

    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(api, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job


def test_a_submission_ray_never_saw_keeps_its_record_for_the_reconciler(
    start_api, silent_ray
) -> None:
    silent_ray.mode = "hang"
    api, _ = start_api(redis_db=15, ray_address=f"http://127.0.0.1:{silent_ray.port}")

    refused = api.post("/trigger_training", json={"hyperparameters": {}}, timeout=60)

    assert refused.status_code == 503, refused.text
    detail = refused.json()["detail"]
    assert "its record is kept and reconciled" in detail
    job_id = detail.split("see /jobs/")[1].split()[0].rstrip(".")
    record = api.get(f"/jobs/{job_id}")
    assert record.status_code == 200
    assert record.json()["status"] == "pending"  # failed by the reconciler after the grace
