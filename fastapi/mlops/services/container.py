"""The per-process set of clients that requests use, built once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.ray_jobs import RayJobsClient
from mlops.clients.redis import AlertStream, JobStore
from mlops.services.alerts import AlertBroadcaster
from mlops.settings import Settings


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
