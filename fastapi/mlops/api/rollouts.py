"""A model's rollouts: a challenger version in shadow or canary beside its champion."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from mlops.api.deps import (
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    WRITE_RESPONSES,
    CatalogDep,
    RolloutsDep,
    Writer,
)
from mlops.contracts.model_definition import MODEL_NAME_PATTERN
from mlops.contracts.rollouts import Rollout, RolloutEnd
from mlops.rollout_schemas import RolloutReport, RolloutRequest
from mlops.schemas import ErrorResponse

router = APIRouter(tags=["rollouts"], responses=UNAUTHORIZED)
Name = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="A model's name.")]
_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "MLflow or Redis is down."}
}


@router.post(
    "/models/{name}/rollouts",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Writer],
    responses={
        **WRITE_RESPONSES,
        **_DOWN,
        404: {"model": ErrorResponse, "description": "No such model, or version."},
        409: {
            "model": ErrorResponse,
            "description": "A rollout is in progress, the version is the champion, there is "
            "no champion, or the version cannot be served (and why).",
        },
    },
)
async def start_rollout(
    name: Name, request: RolloutRequest, catalog: CatalogDep, rollouts: RolloutsDep
) -> Rollout:
    """Put `version` beside the model's champion: `shadow` also sends it `percent` % of
    the requests after the champion answered (unseen by callers), `canary` lets it
    answer `percent` % of them. With `auto`, the sequential test on the labels sent to
    POST /feedback promotes it or aborts the rollout; else it runs until DELETE, a
    promotion or rollback, or `max_hours`."""
    return await rollouts.start(await catalog.get(name), request)


@router.get("/models/{name}/rollouts", responses={**UNKNOWN_MODEL, **_DOWN})
async def rollout_report(name: Name, catalog: CatalogDep, rollouts: RolloutsDep) -> RolloutReport:
    """The rollout in progress (else the last one ended; `rollout` null if none ever):
    labels and live metrics of each side, the difference with its always-valid
    interval, and what the test says now."""
    return await rollouts.report(await catalog.get(name))


@router.delete(
    "/models/{name}/rollouts",
    dependencies=[Writer],
    responses={**UNKNOWN_MODEL, **_DOWN, 404: {"model": ErrorResponse}},
)
async def abort_rollout(
    name: Name,
    catalog: CatalogDep,
    rollouts: RolloutsDep,
    reason: Annotated[str, Query(min_length=1, max_length=500)] = "aborted",
) -> RolloutEnd:
    """End the rollout: the champion answers every request again."""
    return await rollouts.abort(await catalog.get(name), reason)
