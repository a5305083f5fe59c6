"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi.responses import JSONResponse

from fastapi import APIRouter
from mlops.api.deps import ServicesDep
from mlops.schemas import DependencyState, HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> HealthResponse:
    """The process is alive (no dependency is checked)."""
    return HealthResponse()


async def _probe(check: Awaitable[object], timeout: float = 3.0) -> DependencyState:
    try:
        async with asyncio.timeout(timeout):
            result = await check
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return DependencyState(ok=False, detail=f"{type(exc).__name__}: {exc}" or "unreachable")
    return DependencyState(ok=True, detail=str(result) if result not in (None, True) else "ok")


@router.get("/ready", responses={503: {"model": ReadyResponse}})
async def ready(services: ServicesDep) -> ReadyResponse:
    """Ray, MLflow and Redis each reachable; 503 with the failing ones otherwise."""
    ray, mlflow, redis = await asyncio.gather(
        _probe(services.ray.version()),
        _probe(services.registry.health()),
        _probe(services.redis.ping()),
    )
    body = ReadyResponse(
        ready=ray.ok and mlflow.ok and redis.ok,
        dependencies={"ray": ray, "mlflow": mlflow, "redis": redis},
    )
    if not body.ready:
        return JSONResponse(status_code=503, content=body.model_dump())  # type: ignore[return-value]
    return body
