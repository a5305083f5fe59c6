"""Whether the API's dependencies answer (Ray, MLflow and Redis, each with its reason)
and its background loops run."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from mlops.background import LoopHealth
from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.ray_jobs import RayJobsClient
from mlops.clients.redis import AlertStream
from mlops.schemas import DependencyState, LoopState, ReadyResponse


class Readiness:
    def __init__(
        self,
        *,
        ray: RayJobsClient,
        registry: MlflowRegistry,
        alerts: AlertStream,
        loops: Callable[[], dict[str, LoopHealth]],
    ) -> None:
        self._ray = ray
        self._registry = registry
        self._alerts = alerts
        self._loops = loops

    async def check(self) -> ReadyResponse:
        ray, mlflow, redis = await asyncio.gather(
            _probe(self._ray.version()),
            _probe(self._registry.health()),
            _probe(self._alerts.ping()),
        )
        loops = {
            name: LoopState(**dataclasses.asdict(health)) for name, health in self._loops().items()
        }
        return ReadyResponse(
            ready=ray.ok and mlflow.ok and redis.ok and all(s.running for s in loops.values()),
            dependencies={"ray": ray, "mlflow": mlflow, "redis": redis},
            loops=loops,
        )


async def _probe(check: Awaitable[object], timeout: float = 3.0) -> DependencyState:
    try:
        async with asyncio.timeout(timeout):
            result = await check
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return DependencyState(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return DependencyState(ok=True, detail=str(result) if result not in (None, True) else "ok")
