"""Deploying the model's Serve application: from serve.py, and by the API itself."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlparse

from mlops.clients.serve import ServeAdmin, ServeError
from mlops.settings import Settings

log = logging.getLogger(__name__)

IMPORT_PATH = "mlops.ml.serving:app"


def route(settings: Settings) -> str:
    return f"/{settings.model_name}"


def endpoint(settings: Settings) -> str:
    return f"{settings.serve_url.rstrip('/')}{route(settings)}"


def app_config(settings: Settings) -> dict[str, Any]:
    """Serve's declarative config for the model application.

    Deterministic for given settings, so applying it again (serve.py twice, or the API
    and serve.py) is a no-op for Serve.
    """
    serve_port = urlparse(settings.serve_url).port or 8000
    return {
        "http_options": {"host": settings.serve_bind_host, "port": serve_port},
        "applications": [
            {
                "name": settings.model_name,
                "route_prefix": route(settings),
                "import_path": IMPORT_PATH,
                "runtime_env": {"env_vars": settings.as_env(include_secrets=False)},
                "deployments": [
                    {
                        "name": "ModelServer",
                        "num_replicas": settings.serve_replicas,
                        "ray_actor_options": {"num_cpus": 1},
                    }
                ],
            }
        ],
    }


def _is_deployed(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """The running application already has what `wanted` declares (Serve adds defaults
    to what it reports, so only the keys we set are compared)."""
    if not current or current.get("status") != "RUNNING":
        return False
    deployed = current.get("deployed_app_config") or {}
    if any(
        deployed.get(key) != wanted[key] for key in ("import_path", "route_prefix", "runtime_env")
    ):
        return False
    by_name = {d["name"]: d for d in deployed.get("deployments", [])}
    return all(
        all(by_name.get(d["name"], {}).get(key) == value for key, value in d.items())
        for d in wanted["deployments"]
    )


async def deploy(admin: ServeAdmin, settings: Settings, *, timeout: float = 180) -> str:
    """Apply the config unless it is already running, and wait until the application
    runs; returns the endpoint. Running it again changes nothing."""
    config = app_config(settings)
    if _is_deployed(await admin.application(settings.model_name), config["applications"][0]):
        log.info("the Serve application is already running with this configuration")
        return endpoint(settings)
    await admin.apply(config)
    deadline = time.monotonic() + timeout
    delay = 0.5
    while (status := await admin.status(settings.model_name)) != "RUNNING":
        if status in {"DEPLOY_FAILED", "UNHEALTHY"}:
            raise ServeError(f"the Serve application is {status}; see the Ray dashboard")
        if time.monotonic() > deadline:
            raise ServeError(f"the Serve application is still {status} after {timeout:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 3)
    return endpoint(settings)
