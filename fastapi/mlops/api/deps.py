"""Typed dependencies: routes ask for the service they use, the lifespan provides it."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlops.clients.quarantine import Quarantine
from mlops.contracts.model_definition import MODEL_NAME_PATTERN
from mlops.schemas import ErrorResponse
from mlops.services.alerts import AlertFeed
from mlops.services.drift import DriftMonitor
from mlops.services.feedback import Feedback
from mlops.services.inference import Inference
from mlops.services.model_catalog import ModelCatalog
from mlops.services.model_report import ModelReport
from mlops.services.models import Models
from mlops.services.readiness import Readiness
from mlops.services.retraining import RetrainingLoop
from mlops.services.rollouts import Rollouts
from mlops.services.schedules import Schedules
from mlops.services.training import Training
from mlops.settings.api import ApiSettings
from mlops.telemetry import Instruments


# One named provider per service, so a test can swap one with
# `app.dependency_overrides[get_training] = ...`. `async def`: FastAPI runs plain-function
# dependencies in a thread pool, a thread hop per request that halves inference
# throughput at 32 clients.
async def get_app_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_instruments(request: Request) -> Instruments:
    return request.app.state.instruments


async def get_training(request: Request) -> Training:
    return request.app.state.training


async def get_inference(request: Request) -> Inference:
    return request.app.state.inference


async def get_schedules(request: Request) -> Schedules:
    return request.app.state.schedules


async def get_alert_feed(request: Request) -> AlertFeed:
    return request.app.state.alert_feed


async def get_model_report(request: Request) -> ModelReport:
    return request.app.state.model_report


async def get_readiness(request: Request) -> Readiness:
    return request.app.state.readiness


async def get_models(request: Request) -> Models:
    return request.app.state.models


async def get_drift(request: Request) -> DriftMonitor:
    return request.app.state.drift


async def get_quarantine(request: Request) -> Quarantine:
    return request.app.state.quarantine


async def get_catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog


async def get_feedback(request: Request) -> Feedback:
    return request.app.state.feedback


async def get_rollouts(request: Request) -> Rollouts:
    return request.app.state.rollouts


async def get_retraining(request: Request) -> RetrainingLoop:
    return request.app.state.retraining


# `?model=` on the read routes: a model (GET /models), else the default model.
ModelQuery = Annotated[
    str | None,
    Query(
        pattern=MODEL_NAME_PATTERN,
        description="A model (GET /models); default: the default model (for /jobs: all).",
    ),
]


SettingsDep = Annotated[ApiSettings, Depends(get_app_settings)]
InstrumentsDep = Annotated[Instruments, Depends(get_instruments)]
TrainingDep = Annotated[Training, Depends(get_training)]
InferenceDep = Annotated[Inference, Depends(get_inference)]
SchedulesDep = Annotated[Schedules, Depends(get_schedules)]
AlertFeedDep = Annotated[AlertFeed, Depends(get_alert_feed)]
ModelReportDep = Annotated[ModelReport, Depends(get_model_report)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
ModelsDep = Annotated[Models, Depends(get_models)]
DriftDep = Annotated[DriftMonitor, Depends(get_drift)]
QuarantineDep = Annotated[Quarantine, Depends(get_quarantine)]
CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]
FeedbackDep = Annotated[Feedback, Depends(get_feedback)]
RolloutsDep = Annotated[Rollouts, Depends(get_rollouts)]
RetrainingDep = Annotated[RetrainingLoop, Depends(get_retraining)]

# Documents the scheme in OpenAPI (Swagger's Authorize button); we check the token.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="APIToken", description="The value of MLOPS_API_TOKEN."
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check_token(settings: ApiSettings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if settings.api_token is None:
        return
    expected = settings.api_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials else b""
    # compare_digest takes as long for a wrong first byte as for a wrong last one.
    if not secrets.compare_digest(given, expected):
        problem = "wrong API token" if credentials else "this endpoint needs the API token"
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"{problem}: send 'Authorization: Bearer <MLOPS_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_writer(settings: SettingsDep, credentials: Credentials) -> None:
    """Writes always need the token (when one is configured)."""
    _check_token(settings, credentials)


async def require_reader(settings: SettingsDep, credentials: Credentials) -> None:
    """Reads need it only with MLOPS_API_TOKEN_FOR_READS."""
    if settings.api_token_for_reads:
        _check_token(settings, credentials)


# Answers every route may give, documented once (the contract schemathesis checks).
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API token."}
}
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not JSON (or not UTF-8)."},
    413: {"model": ErrorResponse, "description": "Body larger than MLOPS_MAX_BODY_BYTES."},
}
WRITE_RESPONSES = {**UNAUTHORIZED, **BODY_RESPONSES}
# Every route that takes a model: an unknown name is a 404 listing the known ones.
UNKNOWN_MODEL: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such model (the known ones listed)."}
}
Writer = Depends(require_writer)
Reader = Depends(require_reader)
