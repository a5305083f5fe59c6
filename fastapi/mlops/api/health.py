"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from mlops.api.deps import ReadinessDep
from mlops.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> HealthResponse:
    """The process is alive (no dependency is checked)."""
    return HealthResponse()


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(readiness: ReadinessDep) -> ReadyResponse | JSONResponse:
    """Ray, MLflow and Redis each reachable; 503 with the failing ones otherwise."""
    body = await readiness.check()
    if not body.ready:
        return JSONResponse(status_code=503, content=body.model_dump(mode="json"))
    return body
