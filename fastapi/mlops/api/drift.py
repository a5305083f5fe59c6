"""Input drift: the champion's recent inputs against its training data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from mlops.api.deps import UNAUTHORIZED, WRITE_RESPONSES, DriftDep, SchedulesDep, Writer
from mlops.schemas import DriftReport, ErrorResponse, ScheduleInfo, WatchDriftRequest

router = APIRouter(tags=["drift"], responses=UNAUTHORIZED)


@router.post(
    "/watch_drift",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Writer],
    responses={
        **WRITE_RESPONSES,
        429: {"model": ErrorResponse, "description": "Too many schedules and watches."},
        503: {"model": ErrorResponse, "description": "Redis is unreachable."},
    },
)
async def watch_drift(request: WatchDriftRequest, schedules: SchedulesDep) -> ScheduleInfo:
    """Every `minutes`, check the champion's inputs for drift and alert naming the
    features that moved. Listed, and removed, like every schedule."""
    return await schedules.add(kind="drift", minutes=request.minutes, threshold=request.threshold)


@router.get("/drift", responses={503: {"model": ErrorResponse}})
async def drift_now(
    monitor: DriftDep,
    threshold: Annotated[float | None, Query(gt=0, le=10, description="PSI threshold.")] = None,
) -> DriftReport:
    """The champion's drift now: per-feature scores, the sample size and the verdict
    (none with too little traffic: never a false alarm on a handful of rows)."""
    return await monitor.check(threshold)
