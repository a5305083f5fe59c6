"""GET /get_metrics: a model's scores from the MLflow registry and runs."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from mlops.api.deps import UNAUTHORIZED, UNKNOWN_MODEL, CatalogDep, ModelQuery, ModelReportDep
from mlops.schemas import ErrorResponse, MetricsResponse

router = APIRouter(tags=["metrics"], responses=UNAUTHORIZED)


@router.get("/get_metrics", responses={**UNKNOWN_MODEL, 503: {"model": ErrorResponse}})
async def get_metrics(
    report: ModelReportDep, catalog: CatalogDep, model: ModelQuery = None
) -> MetricsResponse:
    """The model's latest registered version and the scores of the last 7 days' runs."""
    return await report.report(await catalog.get(model), now=datetime.now(UTC))
