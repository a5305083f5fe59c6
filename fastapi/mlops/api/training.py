"""Training: start a job on Ray, and follow it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from mlops.api.deps import (
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    WRITE_RESPONSES,
    CatalogDep,
    ModelQuery,
    TrainingDep,
    Writer,
)
from mlops.schemas import (
    ErrorResponse,
    JobAccepted,
    JobInfo,
    JobList,
    JobStatus,
    TrainingRequest,
    TuneRequest,
)

router = APIRouter(tags=["training"], responses=UNAUTHORIZED)

# What submitting a job can answer besides 202 (each route adds its own 422).
_SUBMIT_RESPONSES = {
    **WRITE_RESPONSES,
    429: {"model": ErrorResponse, "description": "Too many jobs pending or running."},
    503: {"model": ErrorResponse, "description": "Ray, MLflow or Redis is unreachable."},
}


@router.post(
    "/trigger_training",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Writer],
    responses={
        **_SUBMIT_RESPONSES,
        **UNKNOWN_MODEL,
        422: {"description": "Invalid hyperparameters or dataset; no job is created."},
    },
)
async def trigger_training(
    request: TrainingRequest, training: TrainingDep, catalog: CatalogDep
) -> JobAccepted:
    """Start a training job of the model (default: the default model) on Ray, with its
    hyperparameters and the request's over them, on its dataset or the one named."""
    job_id = await training.submit(
        await catalog.get(request.model),
        request.hyperparameters,
        dataset_uri=request.dataset_uri,
        target_column=request.target_column,
    )
    return _accepted(job_id)


@router.post(
    "/tune",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Writer],
    responses={
        **_SUBMIT_RESPONSES,
        409: {
            "model": ErrorResponse,
            "description": "The cluster cannot place a single trial (the numbers say why).",
        },
        **UNKNOWN_MODEL,
        422: {"description": "Invalid search space, trials, metric or dataset; nothing runs."},
    },
)
async def tune(request: TuneRequest, training: TrainingDep, catalog: CatalogDep) -> JobAccepted:
    """Search a model's hyperparameters with Ray Tune, trials in parallel on the cluster;
    the best trial is registered and goes through the model's gate. Follow it at
    /jobs/{id}."""
    return _accepted(await training.submit_search(await catalog.get(request.model), request))


def _accepted(job_id: str) -> JobAccepted:
    return JobAccepted(job_id=job_id, status=JobStatus.PENDING, status_url=f"/jobs/{job_id}")


@router.get("/jobs", response_model=JobList, responses=UNKNOWN_MODEL)
async def list_jobs(
    training: TrainingDep,
    catalog: CatalogDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    model: ModelQuery = None,
) -> JobList:
    """Recent training jobs and searches, newest first; with `model`, that model's."""
    if model is None:
        return JobList(jobs=await training.recent(limit))
    definition = await catalog.get(model)
    return JobList(jobs=await training.recent(limit, model=definition.name))


@router.get(
    "/jobs/{job_id}",
    responses={
        404: {"model": ErrorResponse},
        409: {"model": ErrorResponse, "description": "Its record is malformed."},
    },
)
async def get_job(job_id: str, training: TrainingDep) -> JobInfo:
    return await training.get(job_id)
