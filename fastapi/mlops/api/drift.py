"""Input drift: the champion's recent inputs against its training data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from mlops.api.deps import (
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    WRITE_RESPONSES,
    CatalogDep,
    DriftDep,
    ModelQuery,
    SchedulesDep,
    Writer,
)
from mlops.contracts.model_definition import MODEL_NAME_PATTERN
from mlops.schemas import DriftReport, ErrorResponse, ScheduleInfo, WatchDriftRequest

router = APIRouter(tags=["drift"], responses=UNAUTHORIZED)


@router.post(
    "/watch_drift",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Writer],
    responses={
        **WRITE_RESPONSES,
        **UNKNOWN_MODEL,
        429: {"model": ErrorResponse, "description": "Too many schedules and watches."},
        503: {"model": ErrorResponse, "description": "Redis is unreachable."},
    },
)
async def watch_drift(request: WatchDriftRequest, schedules: SchedulesDep) -> ScheduleInfo:
    """Every `minutes` (or at the times of `cron`), check the model's champion's inputs
    for drift and alert naming the features that moved. Listed, and removed, like every schedule."""
    return await schedules.add(
        kind="drift", when=request, model=request.model, threshold=request.threshold
    )


Threshold = Annotated[float | None, Query(gt=0, le=10, description="PSI threshold.")]


@router.get("/drift", responses={**UNKNOWN_MODEL, 503: {"model": ErrorResponse}})
async def drift_now(
    monitor: DriftDep, catalog: CatalogDep, threshold: Threshold = None, model: ModelQuery = None
) -> DriftReport:
    """The model's champion's drift now: per-feature scores, the sample size and the
    verdict (none with too little traffic: never a false alarm on a handful of rows)."""
    return await monitor.check(await catalog.get(model), threshold)


@router.get(
    "/models/{name}/drift",
    responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    tags=["models"],
)
async def model_drift(
    name: Annotated[str, Path(pattern=MODEL_NAME_PATTERN)],
    monitor: DriftDep,
    catalog: CatalogDep,
    threshold: Threshold = None,
) -> DriftReport:
    """As /drift?model={name}."""
    return await monitor.check(await catalog.get(name), threshold)
