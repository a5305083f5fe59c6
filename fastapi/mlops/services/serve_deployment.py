"""Deploying the Serve application that serves every model: from serve.py, and by the
API itself."""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import Any
from urllib.parse import urlparse

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.mlflow_registry import MlflowRegistry, MlflowUnavailable
from mlops.clients.redis import DeployLock
from mlops.clients.serve_admin import ServeAdmin, ServeError
from mlops.contracts.alerts import Alert, AlertKind
from mlops.contracts.placement import on_serving_nodes
from mlops.retry import backoff
from mlops.services.model_catalog import ModelCatalog
from mlops.settings.api import ApiSettings
from mlops.settings.serving import ServingSettings

log = logging.getLogger(__name__)

IMPORT_PATH = "mlops.ml.model_server:app"
# One application for every model (requests name theirs in the multiplexing header).
APP_NAME = "models"
ROUTE = f"/{APP_NAME}"
# Retry-After of a prediction refused while the API is starting serving itself.
SERVING_RETRY_AFTER_S = 2


def endpoint(settings: ApiSettings) -> str:
    return f"{settings.serve_url.rstrip('/')}{ROUTE}"


def app_config(settings: ApiSettings) -> dict[str, Any]:
    """Serve's declarative config: the models' application, and no other (an application
    of an earlier release, named after its one model, is removed by applying it).

    Deterministic for given settings, so applying it again (serve.py twice, or the API
    and serve.py) is a no-op for Serve.
    """
    serve_port = urlparse(settings.serve_url).port or 8000
    return {
        "http_options": {"host": settings.serve_bind_host, "port": serve_port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": ROUTE,
                "import_path": IMPORT_PATH,
                # Its replicas run at Ray's worker niceness, 0 on the platform's nodes
                # (RAY_worker_niceness: local/components.py, helm-values/ray-cluster.yaml).
                "runtime_env": {
                    "env_vars": settings.as_env(include_secrets=False, runtime=ServingSettings)
                },
                "deployments": [
                    {
                        "name": "ModelServer",
                        "num_replicas": settings.serve_replicas,
                        # On serving nodes, whose MLflow user only reads.
                        "ray_actor_options": {
                            "num_cpus": settings.serve_replica_cpus,
                            "resources": on_serving_nodes(),
                        },
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


class NotRunningYet(Exception):
    """The application is still deploying, or Serve is replacing an unhealthy replica."""


async def deploy(admin: ServeAdmin, settings: ApiSettings, *, timeout: float = 180) -> str:
    """Apply the config unless it is already running, and wait until the application
    runs; returns the endpoint. Running it again changes nothing.

    UNHEALTHY is waited through: it is what Serve reports while it replaces a replica that
    died or failed its health check (and, just after the apply, what it reported before).
    DEPLOY_FAILED is final for this config, so it fails at once with Serve's message.
    """
    config = app_config(settings)
    if _is_deployed(await admin.application(APP_NAME), config["applications"][0]):
        log.info("the Serve application is already running with this configuration")
        return endpoint(settings)
    await admin.apply(config)
    try:
        async for attempt in backoff(on=(NotRunningYet,), first=0.5, cap=3.0, within=timeout):
            with attempt:
                app = await admin.application(APP_NAME) or {}
                status, message = app.get("status"), app.get("message") or ""
                if status == "DEPLOY_FAILED":
                    raise ServeError(f"the Serve application failed to deploy: {message}")
                if status != "RUNNING":
                    raise NotRunningYet(f"{status} {message}".strip())
    except NotRunningYet as exc:
        raise ServeError(
            f"the Serve application is still {exc} after {timeout:.0f}s; see the Ray dashboard"
        ) from None
    return endpoint(settings)


class Outage(Enum):
    """What a request that found serving down is told comes next."""

    STARTING = "starting"  # the API deploys it: ask again after SERVING_RETRY_AFTER_S
    MANUAL = "manual"  # a person must start it (serve.py)
    UNTRAINED = "untrained"  # the model has no champion: train it, and serving follows


class Serving:
    """Keeps the Serve application deployed while any model has a champion, so running
    serve.py by hand is optional. One API replica deploys at a time (a Redis lock)."""

    def __init__(
        self,
        *,
        settings: ApiSettings,
        admin: ServeAdmin,
        registry: MlflowRegistry,
        lock: DeployLock,
        catalog: ModelCatalog,
    ) -> None:
        self._settings = settings
        self._admin = admin
        self._registry = registry
        self._lock = lock
        self._catalog = catalog
        self._wanted = asyncio.Event()

    @property
    def hint(self) -> str:
        """What a client should do while serving is down."""
        if self._settings.auto_serve:
            return (
                "Serving is being started: the API deploys it for the champion models. "
                "Retry in a few seconds; /ready and the Ray dashboard show progress."
            )
        return "Serving is down: start it with `python fastapi/serve.py` and check /ready."

    async def outage(self, registered_model: str, version: str | None) -> Outage:
        """A request for `registered_model` (its champion, or `version`) found serving
        down: look now rather than at the next period, and say what comes next. Serving
        is deployed for champions: a model with none has nothing to wait for. A pinned
        version is answered once serving is up (one registry call here, not one per
        model)."""
        self._wanted.set()
        if not self._settings.auto_serve:
            return Outage.MANUAL
        if version is not None:
            return Outage.STARTING
        try:
            alias = self._settings.champion_alias
            champion = await self._registry.alias_version(registered_model, alias)
        except MlflowUnavailable:
            return Outage.STARTING  # cannot tell: it deploys as soon as it can
        return Outage.STARTING if champion else Outage.UNTRAINED

    def on_alert(self, alert: Alert) -> None:
        """A champion set by a training or by hand may be the first one: look now, not
        at the next period, so a first prediction waits only for the deployment."""
        if _sets_a_champion(alert):
            self._wanted.set()

    async def keep_serving(self, background: Background) -> None:
        while background.running:
            try:
                await self._deploy_if_needed()
                background.completed_round()
            except (ServeError, MlflowUnavailable, RedisError, OSError) as exc:
                log.warning("auto-serve check skipped: %s", exc)
            await background.pause_until(self._wanted, self._settings.serve_check_seconds)
            self._wanted.clear()

    async def _deploy_if_needed(self) -> None:
        settings = self._settings
        status = await self._admin.status(APP_NAME)
        # UNHEALTHY: Serve is replacing a replica itself. Applying our config then would
        # also undo one applied by serve.py (its replica count, say).
        if status in {"RUNNING", "DEPLOYING", "UNHEALTHY"}:
            return
        if not await self._any_champion():
            return
        async with self._lock.held() as mine:
            if mine:
                log.info("a champion exists and serving is %s: deploying", status or "down")
                log.info("serving at %s", await deploy(self._admin, settings))

    async def _any_champion(self) -> bool:
        alias = self._settings.champion_alias
        for model in await self._catalog.all():
            if await self._registry.alias_version(model.registered_model, alias):
                return True
        return False


def _sets_a_champion(alert: Alert) -> bool:
    if alert.kind is AlertKind.CHAMPION:
        return True
    return alert.kind is AlertKind.TRAINING and (alert.data or {}).get("promoted") is True
