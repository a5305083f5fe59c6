"""The per-process set of clients that requests use, built once by the lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from redis.asyncio import Redis

from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.ray_jobs import RayJobsClient
from mlops.clients.redis import AlertStream, JobStore
from mlops.clients.serve import ServeAdmin
from mlops.services.alerts import AlertBroadcaster
from mlops.services.batching import ServeBatcher
from mlops.settings import Settings
from mlops.telemetry import Metrics

if TYPE_CHECKING:
    from mlops.services.schedules import Schedules


@dataclass
class Services:
    settings: Settings
    http: httpx.AsyncClient
    redis: Redis
    ray: RayJobsClient
    registry: MlflowRegistry
    jobs: JobStore
    alerts: AlertStream
    broadcaster: AlertBroadcaster
    serve: ServeAdmin
    batcher: ServeBatcher
    metrics: Metrics
    schedules: Schedules | None = None  # set by the lifespan once services exist
    # Set when a request found serving down: auto-serve checks at once, not in 10 s.
    serving_wanted: asyncio.Event = field(default_factory=asyncio.Event)
