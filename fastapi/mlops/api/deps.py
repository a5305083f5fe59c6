"""Typed dependencies: routes ask for what they use, the lifespan provides it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from mlops.services.container import Services
from mlops.services.schedules import Schedules
from mlops.settings import Settings


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_schedules(request: Request) -> Schedules:
    schedules = request.app.state.services.schedules
    assert schedules is not None, "the lifespan starts the scheduler"
    return schedules


SchedulesDep = Annotated[Schedules, Depends(get_schedules)]
