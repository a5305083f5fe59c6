"""The API's app factory. Connections and background tasks live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fastapi import FastAPI, Request
from mlops.aio import Background
from mlops.api import alerts, health, inference, metrics, prometheus, schedules, training
from mlops.api.deps import Reader
from mlops.api.middleware import BodySizeLimit
from mlops.clients import redis as redis_client
from mlops.clients.mlflow_registry import MlflowRegistry, MlflowUnavailable
from mlops.clients.ray_jobs import RayJobsClient, RayJobsError
from mlops.clients.redis import AlertStream, JobStore
from mlops.clients.serve import ServeAdmin, ServeError
from mlops.logs import configure_logging
from mlops.ml.model import HyperparameterError
from mlops.services.alerts import AlertBroadcaster
from mlops.services.batching import ServeBatcher
from mlops.services.container import Services
from mlops.services.schedules import Schedules, TooManySchedules
from mlops.services.serving import deploy, endpoint
from mlops.services.training import TooManyTrainings, reconcile
from mlops.settings import Settings, get_settings
from mlops.telemetry import Metrics, RequestTelemetry

log = logging.getLogger("mlops.api")


async def _reconcile_forever(services: Services, background: Background) -> None:
    while background.running:
        try:
            await reconcile(ray=services.ray, jobs=services.jobs, alerts=services.alerts, limit=50)
        except (RayJobsError, RedisError, OSError) as exc:
            log.warning("job reconciliation skipped: %s", exc)
        await background.pause(services.settings.job_poll_seconds)


async def _keep_serving(services: Services, background: Background) -> None:
    """Deploy the Serve application when a champion exists and serving is down, so
    running serve.py by hand is optional. One replica deploys at a time (Redis lock)."""
    settings = services.settings
    while background.running:
        try:
            status = await services.serve.status(settings.model_name)
            if status not in {"RUNNING", "DEPLOYING"} and await services.registry.alias_version(
                settings.model_name, settings.champion_alias
            ):
                if await services.redis.set("mlops:serve-deploy", "1", nx=True, ex=300):
                    try:
                        log.info("a champion exists and serving is %s: deploying", status or "down")
                        log.info("serving at %s", await deploy(services.serve, settings))
                    finally:
                        await services.redis.delete("mlops:serve-deploy")
        except (ServeError, MlflowUnavailable, RedisError, OSError) as exc:
            log.warning("auto-serve check skipped: %s", exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await services.serving_wanted.wait()
        services.serving_wanted.clear()


async def _wake_scheduler(schedules: Schedules, background: Background, period: float) -> None:
    """Re-read the shared schedule store now and then: another replica may have added
    a schedule, or stopped, leaving its schedules for this one to run."""
    while background.running:
        await background.pause(period)
        schedules.wakeup()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=3.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )
    redis = redis_client.connect(settings)
    stream = AlertStream(redis, max_len=settings.alert_history)
    instruments: Metrics = app.state.metrics
    broadcaster = AlertBroadcaster(
        stream, on_alert=lambda alert: instruments.alerts.labels(alert.level).inc()
    )
    instruments.sse_clients.set_function(lambda: broadcaster.client_count)
    services = Services(
        settings=settings,
        http=http,
        redis=redis,
        ray=RayJobsClient(http, settings.ray_address),
        registry=MlflowRegistry(http, settings.mlflow_tracking_uri),
        jobs=JobStore(redis, history=settings.job_history),
        alerts=stream,
        broadcaster=broadcaster,
        metrics=instruments,
        serve=ServeAdmin(http, settings.ray_address),
        batcher=ServeBatcher(
            http,
            endpoint(settings),
            max_batch=settings.serve_batch_rows,
            max_in_flight=settings.serve_calls_in_flight,
        ),
    )
    services.schedules = Schedules(services)
    services.schedules.start(asyncio.get_running_loop())
    app.state.services = services
    background = Background()
    background.start(services.broadcaster.run(background), "alert-broadcaster")
    background.start(_reconcile_forever(services, background), "job-reconciler")
    sync_period = min(5.0, settings.schedule_minute_seconds / 2)
    background.start(_wake_scheduler(services.schedules, background, sync_period), "schedule-sync")
    if settings.auto_serve:
        background.start(_keep_serving(services, background), "auto-serve")
    # Everything built so far lives as long as the process: keep it out of the garbage
    # collector's scans, which otherwise add pauses to the latency tail under load.
    gc.freeze()
    log.info("API up: ray=%s mlflow=%s", settings.ray_address, settings.mlflow_tracking_uri)
    try:
        yield
    finally:
        await background.stop()
        services.schedules.shutdown()
        await services.batcher.aclose()
        await redis.aclose()
        await http.aclose()


def _unavailable(name: str, hint: str):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
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


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse(status_code=422, content={"detail": errors})


# FastAPI's words when a body cannot be decoded at all (bytes that are not UTF-8 JSON).
_UNPARSEABLE = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSEABLE:
        return JSONResponse(
            status_code=400,
            content={"detail": "the request body is not valid JSON text (UTF-8 expected)"},
        )
    return await http_exception_handler(request, exc)


async def _too_many(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=429, content={"detail": str(exc)}, headers={"Retry-After": "30"}
    )


async def _bad_hyperparameter(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HyperparameterError)
    return JSONResponse(
        status_code=422,
        content={
            "detail": [
                {
                    "loc": ["body", "hyperparameters", exc.key],
                    "msg": exc.message,
                    "type": "value_error",
                }
            ]
        },
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_format)
    app = FastAPI(
        title="MLOps platform API",
        summary="Train on Ray, register in MLflow, serve with Ray Serve, alert over SSE.",
        version="0.1.0",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.metrics = instruments = Metrics()
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
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
    )
    # Added last, so outermost: it sees (and counts) every answer, 413s and CORS included.
    app.add_middleware(
        RequestTelemetry, metrics=instruments, log_successes=settings.access_log == "all"
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(TooManyTrainings, _too_many)
    app.add_exception_handler(TooManySchedules, _too_many)
    app.add_exception_handler(HyperparameterError, _bad_hyperparameter)
    app.add_exception_handler(
        MlflowUnavailable, _unavailable("MLflow", "Check MLOPS_MLFLOW_TRACKING_URI and /ready.")
    )
    app.add_exception_handler(
        RayJobsError, _unavailable("Ray", "Check MLOPS_RAY_ADDRESS and /ready.")
    )
    app.add_exception_handler(
        RedisError, _unavailable("Redis", "Check MLOPS_REDIS_URL and /ready.")
    )
    # With MLOPS_API_TOKEN_FOR_READS every route but the probes and the SSE feed checks
    # the token; otherwise reads carry no dependency at all (it costs on /inference).
    readers = [Reader] if settings.api_token_for_reads else []
    for router in (training, inference, schedules, metrics, prometheus):
        app.include_router(router.router, dependencies=readers)
    app.include_router(alerts.router)  # /alerts checks readers itself; /webhook is open
    app.include_router(health.router)
    return app
