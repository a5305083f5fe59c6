"""GET /get_metrics: the model's accuracy from the MLflow registry and runs."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from mlops.api.deps import UNAUTHORIZED, ModelReportDep
from mlops.schemas import ErrorResponse, MetricsResponse

router = APIRouter(tags=["metrics"], responses=UNAUTHORIZED)


@router.get("/get_metrics", responses={503: {"model": ErrorResponse}})
async def get_metrics(report: ModelReportDep) -> MetricsResponse:
    """The latest registered model and the accuracy of the last 7 days' runs."""
    return await report.report(now=datetime.now(UTC))
