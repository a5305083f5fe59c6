"""Model metrics from the MLflow registry and runs."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from mlops.api.deps import UNAUTHORIZED, ServicesDep
from mlops.schemas import ErrorResponse, MetricsResponse
from mlops.services.metrics import model_metrics

router = APIRouter(tags=["metrics"], responses=UNAUTHORIZED)


@router.get("/get_metrics", responses={503: {"model": ErrorResponse}})
async def get_metrics(services: ServicesDep) -> MetricsResponse:
    """The latest registered model and the accuracy of the last 7 days' runs."""
    return await model_metrics(
        registry=services.registry, settings=services.settings, now=datetime.now(UTC)
    )
