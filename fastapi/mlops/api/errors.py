"""How the platform's error types become HTTP answers: each a clear 4xx or 503 with
what to do, never a bare 500."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlops.clients.dataset_headers import StorageUnavailable
from mlops.clients.mlflow_registry import MlflowUnavailable
from mlops.clients.ray_jobs import RayJobsError
from mlops.clients.redis.model_definitions import MalformedDefinition
from mlops.ml.estimators import InvalidField
from mlops.services.job_records import MalformedJob, UnknownJob
from mlops.services.model_catalog import ModelExists, ModelInUse, TooManyModels, UnknownModel
from mlops.services.models import ChampionConflict, ForeignVersion, UnknownVersion
from mlops.services.rollouts import NoRollout, RolloutConflict
from mlops.services.schedules import TooManySchedules
from mlops.services.training import ClusterTooSmall, TooManyTrainings

log = logging.getLogger("mlops.api")

Handler = Callable[[Request, Exception], Awaitable[Response]]

# FastAPI's words when a body cannot be decoded at all (bytes that are not UTF-8 JSON).
_UNPARSEABLE = "There was an error parsing the body"


def _unavailable(name: str, hint: str) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        log.warning("%s %s: %s unavailable: %s", request.method, request.url.path, name, exc)
        return JSONResponse(
            status_code=503, content={"detail": f"{name} is unavailable: {exc}. {hint}"}
        )

    return handler


def _json_safe(value: object) -> object:
    """Non-finite floats as text: a rejected NaN must not break the error reply."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse(status_code=422, content={"detail": errors})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSEABLE:
        return JSONResponse(
            status_code=400,
            content={"detail": "the request body is not valid JSON text (UTF-8 expected)"},
        )
    return await http_exception_handler(request, exc)


async def _too_many(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        status_code=429, content={"detail": str(exc)}, headers={"Retry-After": "30"}
    )


async def _invalid_field(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidField)
    problem = {
        "loc": ["body", *exc.loc],
        "msg": exc.message,
        "type": "value_error",
    }
    return JSONResponse(status_code=422, content={"detail": [problem]})


def _status(code: int) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        return JSONResponse(status_code=code, content={"detail": str(exc)})

    return handler


async def _malformed_job(request: Request, exc: Exception) -> Response:
    detail = (
        f"this job's record is malformed ({exc}); the job reconciler moves an active one "
        "to the quarantine (GET /quarantine)"
    )
    return JSONResponse(status_code=409, content={"detail": detail})


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(TooManyTrainings, _too_many)
    app.add_exception_handler(TooManySchedules, _too_many)
    app.add_exception_handler(TooManyModels, _too_many)
    app.add_exception_handler(UnknownModel, _status(404))
    app.add_exception_handler(ModelExists, _status(409))
    app.add_exception_handler(ModelInUse, _status(409))
    app.add_exception_handler(MalformedDefinition, _status(409))
    app.add_exception_handler(InvalidField, _invalid_field)
    app.add_exception_handler(UnknownVersion, _status(404))
    app.add_exception_handler(ChampionConflict, _status(409))
    app.add_exception_handler(ForeignVersion, _status(409))
    app.add_exception_handler(ClusterTooSmall, _status(409))
    app.add_exception_handler(UnknownJob, _status(404))
    app.add_exception_handler(NoRollout, _status(404))
    app.add_exception_handler(RolloutConflict, _status(409))
    app.add_exception_handler(MalformedJob, _malformed_job)
    app.add_exception_handler(
        MlflowUnavailable, _unavailable("MLflow", "Check MLOPS_MLFLOW_TRACKING_URI and /ready.")
    )
    app.add_exception_handler(
        RayJobsError, _unavailable("Ray", "Check MLOPS_RAY_ADDRESS and /ready.")
    )
    app.add_exception_handler(
        RedisError, _unavailable("Redis", "Check MLOPS_REDIS_URL and /ready.")
    )
    app.add_exception_handler(
        StorageUnavailable,
        _unavailable("Dataset storage", "Check MLOPS_S3_ENDPOINT_URL and its credentials."),
    )
