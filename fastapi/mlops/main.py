"""The API's app factory: the routes and middleware, and a lifespan that builds the
services (`mlops.wiring`) and runs their background loops."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from mlops import logs
from mlops.api import (
    alerts,
    drift,
    errors,
    feedback,
    health,
    inference,
    model_report,
    models,
    prometheus,
    quarantine,
    rollouts,
    schedules,
)
from mlops.api import training as training_routes
from mlops.api.deps import Reader
from mlops.api.middleware import BodySizeLimit
from mlops.background import Background
from mlops.settings.api import ApiSettings
from mlops.telemetry import Instruments, RequestTelemetry
from mlops.wiring import build_services, open_clients, start_loops

log = logging.getLogger("mlops.api")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings = app.state.settings
    async with AsyncExitStack() as stack:
        clients = await open_clients(stack, settings)
        background = Background()
        loops = build_services(app, clients, background, stack)
        stack.push_async_callback(background.stop)  # first to run at exit
        start_loops(background, loops, settings)
        # Everything built so far lives as long as the process: keep it out of the garbage
        # collector's scans. And collect the young generation every 10,000 allocations,
        # not 700: with a thousand alert streams, the default promoted the objects of the
        # writes in flight during each fan-out, and the full collections that followed
        # (every 13 s at ten alerts a second) stalled every stream for 130-170 ms.
        gc.freeze()
        gc.set_threshold(10_000)
        log.info("API up: ray=%s mlflow=%s", settings.ray_address, settings.mlflow_tracking_uri)
        yield


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    logs.configure(settings.log_format)
    app = FastAPI(
        title="MLOps platform API",
        summary="Train on Ray, register in MLflow, serve with Ray Serve, alert over SSE.",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.instruments = instruments = Instruments()
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    if settings.environment == "production" and len(token) < 16:
        # Only the API needs it: Ray jobs and replicas read the same settings without it.
        raise RuntimeError("production needs MLOPS_API_TOKEN, at least 16 characters")
    if not token:
        log.warning("MLOPS_API_TOKEN is not set: anyone who reaches the API can write")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
    )
    # Added last, so outermost: it sees (and counts) every answer, 413s and CORS included.
    app.add_middleware(
        RequestTelemetry, instruments=instruments, log_successes=settings.access_log == "all"
    )
    errors.install(app)
    # With MLOPS_API_TOKEN_FOR_READS every route but the probes and the SSE feed checks
    # the token; otherwise reads carry no dependency at all (it costs on /inference).
    readers = [Reader] if settings.api_token_for_reads else []
    routers = (
        training_routes,
        inference,
        schedules,
        model_report,
        models,
        drift,
        feedback,
        rollouts,
        quarantine,
    )
    for router in (*routers, prometheus):
        app.include_router(router.router, dependencies=readers)
    app.include_router(alerts.router)  # /alerts checks readers itself; /webhook is open
    app.include_router(health.router)
    return app
