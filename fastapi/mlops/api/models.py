"""Models: their definitions (create, list, change, archive) and, per model, the
registry as people use it: versions, promote, roll back, history."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from mlops.api.deps import (
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    WRITE_RESPONSES,
    CatalogDep,
    ModelsDep,
    RetrainingDep,
    SchedulesDep,
    Writer,
)
from mlops.contracts.model_definition import MODEL_NAME_PATTERN, ModelDefinition
from mlops.model_schemas import (
    ModelCatalogList,
    ModelCreate,
    ModelDetail,
    ModelInfo,
    ModelPatch,
)
from mlops.schemas import (
    ChampionHistory,
    ChampionMove,
    ErrorResponse,
    ModelList,
    PromoteRequest,
    RollbackRequest,
)
from mlops.services.model_catalog import ModelCatalog
from mlops.services.models import Models

router = APIRouter(tags=["models"], responses=UNAUTHORIZED)
Responses = dict[int | str, dict[str, Any]]
_READ: Responses = {
    **UNKNOWN_MODEL,
    503: {"model": ErrorResponse, "description": "MLflow or Redis is down."},
}
_MOVED: Responses = {
    **WRITE_RESPONSES,
    **_READ,
    409: {"model": ErrorResponse, "description": "The move cannot be made (and why)."},
}
Name = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="A model's name.")]
Version = Annotated[str, Path(pattern=r"^[1-9][0-9]{0,9}$", description="A version number.")]
Limit = Annotated[int, Query(ge=1, le=1000)]


async def _info(catalog: ModelCatalog, models: Models, model: ModelDefinition) -> ModelInfo:
    return ModelInfo(
        name=model.name,
        registered_model=model.registered_model,
        spec=model.spec,
        is_default=model.name == catalog.default_name,
        created_at=model.created_at,
        updated_at=model.updated_at,
        champion=await models.champion(model),
    )


@router.get("/models", responses={503: {"model": ErrorResponse}})
async def list_models(catalog: CatalogDep, models: ModelsDep) -> ModelCatalogList:
    """Every model in use, with its champion: version, score on the gate's metric and
    when it was trained."""
    defined = await catalog.all()
    found = await asyncio.gather(*(_info(catalog, models, model) for model in defined))
    return ModelCatalogList(default_model=catalog.default_name, models=list(found))


@router.post(
    "/models",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Writer],
    responses={
        **WRITE_RESPONSES,
        409: {"model": ErrorResponse, "description": "A model of that name exists."},
        422: {"description": "A field is wrong (named in the answer); nothing is created."},
        429: {"model": ErrorResponse, "description": "MLOPS_MAX_MODELS models exist."},
    },
)
async def create_model(request: ModelCreate, catalog: CatalogDep, models: ModelsDep) -> ModelInfo:
    """Define a model: its dataset, task, estimator family, default hyperparameters and
    promotion gate. Train it with POST /trigger_training {"model": name}."""
    return await _info(catalog, models, await catalog.create(request))


@router.get("/models/{name}", responses=_READ)
async def get_model(name: Name, catalog: CatalogDep, models: ModelsDep) -> ModelDetail:
    """One model's definition, champion and versions (newest first)."""
    model = await catalog.get(name)
    info, listed = await asyncio.gather(_info(catalog, models, model), models.versions(model))
    return ModelDetail(**info.model_dump(), versions=listed.versions)


@router.patch(
    "/models/{name}",
    dependencies=[Writer],
    responses={**WRITE_RESPONSES, **UNKNOWN_MODEL, 422: {"description": "A field is wrong."}},
)
async def change_model(
    name: Name, patch: ModelPatch, catalog: CatalogDep, models: ModelsDep
) -> ModelInfo:
    """Change a model's definition; the change is recorded in /models/{name}/history.
    The next training uses it; the versions trained before stay as they were."""
    return await _info(catalog, models, await catalog.change(name, patch, by="api"))


@router.delete(
    "/models/{name}",
    dependencies=[Writer],
    responses={
        **UNKNOWN_MODEL,
        409: {"model": ErrorResponse, "description": "The default model, or one in use."},
    },
)
async def archive_model(
    name: Name, catalog: CatalogDep, schedules: SchedulesDep, models: ModelsDep
) -> ModelInfo:
    """Archive a model no schedule or watch uses: it is no longer listed nor trained;
    its versions stay in MLflow. Creating it again takes its name back up."""
    archived = await catalog.archive(name, await schedules.users_of(name))
    return await _info(catalog, models, archived)


@router.get("/models/{name}/versions", responses=_READ)
async def list_versions(name: Name, catalog: CatalogDep, models: ModelsDep) -> ModelList:
    """Every registered version of the model, newest first: scores, aliases and why it
    was or was not promoted."""
    return await models.versions(await catalog.get(name))


@router.post("/models/{name}/versions/{version}/promote", dependencies=[Writer], responses=_MOVED)
async def promote(
    name: Name, version: Version, request: PromoteRequest, catalog: CatalogDep, models: ModelsDep
) -> ChampionMove:
    """Make `version` the model's champion; serving follows within its reload period."""
    return await models.promote(await catalog.get(name), version, reason=request.reason)


@router.post("/models/{name}/rollback", dependencies=[Writer], responses=_MOVED)
async def rollback(
    name: Name, request: RollbackRequest, catalog: CatalogDep, models: ModelsDep
) -> ChampionMove:
    """Give the model's champion back to the version it replaced (undo the last
    promotion)."""
    return await models.rollback(await catalog.get(name), reason=request.reason)


@router.get("/models/{name}/history", responses=_READ)
async def history(
    name: Name,
    catalog: CatalogDep,
    models: ModelsDep,
    retraining: RetrainingDep,
    limit: Limit = 100,
) -> ChampionHistory:
    """Every move of the model's champion alias, newest first (by training jobs, people
    and rollouts), every change of its definition, and every step of its retraining
    policy."""
    model = await catalog.get(name)
    return ChampionHistory(
        moves=await models.history(model, limit),
        definition_changes=await catalog.changes(name, limit),
        retraining=await retraining.steps(model, limit),
    )
