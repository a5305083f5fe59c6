"""Typed dependencies: routes ask for what they use, the lifespan provides it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from mlops.services.container import Services
from mlops.settings import Settings


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
