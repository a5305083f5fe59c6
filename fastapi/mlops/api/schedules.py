"""Periodic training and model-staleness watches."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from mlops.api.deps import UNAUTHORIZED, UNKNOWN_MODEL, WRITE_RESPONSES, SchedulesDep, Writer
from mlops.schemas import (
    ErrorResponse,
    ScheduleInfo,
    ScheduleList,
    ScheduleRemoved,
    ScheduleTrainingRequest,
    WatchModelRequest,
)

router = APIRouter(tags=["schedules"], responses=UNAUTHORIZED)
_ADDED = {
    **WRITE_RESPONSES,
    **UNKNOWN_MODEL,
    429: {"model": ErrorResponse, "description": "Too many schedules and watches."},
    503: {"model": ErrorResponse, "description": "Redis is unreachable."},
}


@router.post(
    "/schedule_training",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Writer],
    responses={
        **_ADDED,
        422: {
            "description": "Invalid minutes, cron, time zone, hyperparameters, dataset or search."
        },
    },
)
async def schedule_training(
    request: ScheduleTrainingRequest, schedules: SchedulesDep
) -> ScheduleInfo:
    """Submit a training job of the model every `minutes` or at the times of `cron`,
    as /trigger_training does; with `tune`, a hyperparameter search, as /tune does."""
    return await schedules.add(
        kind="training",
        when=request,
        model=request.model,
        hyperparameters=request.hyperparameters,
        dataset_uri=request.dataset_uri,
        target_column=request.target_column,
        tune=request.tune,
    )


@router.post(
    "/watch_model", status_code=status.HTTP_201_CREATED, dependencies=[Writer], responses=_ADDED
)
async def watch_model(request: WatchModelRequest, schedules: SchedulesDep) -> ScheduleInfo:
    """Every `minutes` (or at the times of `cron`), alert if the model's newest version
    is older than the time since the previous run."""
    return await schedules.add(kind="watch", when=request, model=request.model)


@router.delete(
    "/kill_scheduled_job/{job_id}",
    dependencies=[Writer],
    responses={**WRITE_RESPONSES, 404: {"model": ErrorResponse}},
)
async def kill_scheduled_job(job_id: str, schedules: SchedulesDep) -> ScheduleRemoved:
    """Remove a schedule or watch, whichever API replica created it."""
    if not await schedules.remove(job_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scheduled job {job_id!r}")
    return ScheduleRemoved(schedule_id=job_id)


@router.get("/scheduled_jobs")
async def scheduled_jobs(schedules: SchedulesDep) -> ScheduleList:
    """Every schedule and watch, oldest first, with its next run."""
    return ScheduleList(schedules=await schedules.list())
