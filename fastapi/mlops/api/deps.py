"""Typed dependencies: routes ask for what they use, the lifespan provides it."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fastapi import Depends, HTTPException, Request, status
from mlops.schemas import ErrorResponse
from mlops.services.container import Services
from mlops.services.schedules import Schedules
from mlops.settings import Settings


# Dependencies are `async def`: FastAPI would run plain functions in a thread pool, a
# thread hop per request that halves inference throughput at 32 clients.
async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_schedules(request: Request) -> Schedules:
    schedules = request.app.state.services.schedules
    assert schedules is not None, "the lifespan starts the scheduler"
    return schedules


SchedulesDep = Annotated[Schedules, Depends(get_schedules)]

# Documents the scheme in OpenAPI (Swagger's Authorize button); we check the token.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="APIToken", description="The value of MLOPS_API_TOKEN."
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check_token(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
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
UNAUTHORIZED = {401: {"model": ErrorResponse, "description": "Missing or wrong API token."}}
BODY_RESPONSES = {
    400: {"model": ErrorResponse, "description": "The body is not JSON (or not UTF-8)."},
    413: {"model": ErrorResponse, "description": "Body larger than MLOPS_MAX_BODY_BYTES."},
}
WRITE_RESPONSES = {**UNAUTHORIZED, **BODY_RESPONSES}
Writer = Depends(require_writer)
Reader = Depends(require_reader)
