"""The model registry as people use it: versions, promote, roll back, history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from mlops.api.deps import UNAUTHORIZED, WRITE_RESPONSES, ModelsDep, Writer
from mlops.schemas import (
    ChampionHistory,
    ChampionMove,
    ErrorResponse,
    ModelList,
    PromoteRequest,
    RollbackRequest,
)

router = APIRouter(tags=["models"], responses=UNAUTHORIZED)
_MOVED = {
    **WRITE_RESPONSES,
    409: {"model": ErrorResponse, "description": "The move cannot be made (and why)."},
    503: {"model": ErrorResponse, "description": "MLflow or Redis is unreachable."},
}
Version = Annotated[str, Path(pattern=r"^[1-9][0-9]{0,9}$", description="A version number.")]


@router.get("/models", responses={503: {"model": ErrorResponse}})
async def list_models(models: ModelsDep) -> ModelList:
    """Every registered version, newest first: scores, aliases and why it was or was
    not promoted."""
    return await models.versions()


@router.post(
    "/models/{version}/promote",
    dependencies=[Writer],
    responses={**_MOVED, 404: {"model": ErrorResponse, "description": "No such version."}},
)
async def promote(version: Version, request: PromoteRequest, models: ModelsDep) -> ChampionMove:
    """Make `version` the champion; serving follows within its reload period."""
    return await models.promote(version, reason=request.reason)


@router.post("/models/rollback", dependencies=[Writer], responses=_MOVED)
async def rollback(request: RollbackRequest, models: ModelsDep) -> ChampionMove:
    """Give the champion back to the version it replaced (undo the last promotion)."""
    return await models.rollback(reason=request.reason)


@router.get("/models/history", responses={503: {"model": ErrorResponse}})
async def history(
    models: ModelsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> ChampionHistory:
    """Every move of the champion alias, newest first: by training jobs and by people."""
    return ChampionHistory(moves=await models.history(limit))
