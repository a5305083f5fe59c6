"""The API's object graph: its clients, opened once; each service built with only the
clients it uses and put on `app.state` for the routes; the services' background loops."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from mlops.background import Background
from mlops.clients import redis as redis_client
from mlops.clients.dataset_headers import DatasetHeaders
from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.quarantine import Quarantine
from mlops.clients.ray_jobs import RayJobsClient
from mlops.clients.redis import AlertStream, ChampionMoves, DeployLock, DriftSamples, JobStore
from mlops.clients.redis.model_definitions import ModelDefinitions
from mlops.clients.redis.predictions import PredictionStore
from mlops.clients.redis.retraining import RetrainingStore
from mlops.clients.redis.rollouts import RolloutStore
from mlops.clients.redis.trainer_queue import TrainerQueue
from mlops.clients.schedule_store import ScheduleStore
from mlops.clients.serve_admin import ServeAdmin
from mlops.contracts.alerts import Alert
from mlops.ml.data import s3_config
from mlops.services.alerts import AlertFeed
from mlops.services.batching import ServeBatcher
from mlops.services.drift import DriftMonitor
from mlops.services.feedback import Feedback
from mlops.services.inference import Inference
from mlops.services.job_reconciler import JobReconciler
from mlops.services.live_watch import LiveWatch
from mlops.services.model_catalog import ModelCatalog
from mlops.services.model_report import ModelReport
from mlops.services.models import Models
from mlops.services.readiness import Readiness
from mlops.services.retraining import RetrainingLoop
from mlops.services.rollout_routing import RolloutRouter
from mlops.services.rollouts import Rollouts
from mlops.services.schedules import Schedules
from mlops.services.serve_deployment import Serving, endpoint
from mlops.services.training import Training
from mlops.settings.api import ApiSettings
from mlops.telemetry import Instruments

# How long a request waits on S3 to read a dataset's header.
DATASET_HEADER_TIMEOUT = 10.0


@dataclass(frozen=True)
class Clients:
    """The API's connections, opened once and shared by the services that need them."""

    http: httpx.AsyncClient
    serve_http: aiohttp.ClientSession
    redis: Redis
    alerts: AlertStream
    registry: MlflowRegistry
    ray: RayJobsClient
    quarantine: Quarantine


async def open_clients(stack: AsyncExitStack, settings: ApiSettings) -> Clients:
    http = await stack.enter_async_context(
        httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=3.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
    )
    # Predictions have their own client: aiohttp, a quarter of httpx's cost a call.
    serve_http = await stack.enter_async_context(
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    )
    redis = redis_client.connect(settings, max_connections=settings.redis_max_connections)
    stack.push_async_callback(redis.aclose)
    return Clients(
        http=http,
        serve_http=serve_http,
        redis=redis,
        alerts=AlertStream(redis, max_len=settings.alert_history),
        registry=MlflowRegistry(http, settings.mlflow_tracking_uri, settings.mlflow_credentials()),
        ray=RayJobsClient(http, settings.ray_address, settings.ray_token()),
        quarantine=Quarantine(redis),
    )


@dataclass(frozen=True)
class Loops:
    """The services whose loops run in the background."""

    feed: AlertFeed
    reconciler: JobReconciler
    schedules: Schedules
    serving: Serving
    closed_loop: ClosedLoop
    training: Training


def _inference(
    settings: ApiSettings,
    clients: Clients,
    catalog: ModelCatalog,
    instruments: Instruments,
    stack: AsyncExitStack,
    router: RolloutRouter,
) -> tuple[Serving, Inference]:
    """Serve's deployment, and predictions batched to it (and recorded by its replicas,
    whose counts reach the API's metrics)."""
    serving = Serving(
        settings=settings,
        admin=ServeAdmin(clients.http, settings.ray_address, settings.ray_token()),
        registry=clients.registry,
        lock=DeployLock(clients.redis),
        catalog=catalog,
    )
    batcher = ServeBatcher(
        clients.serve_http,
        endpoint(settings),
        max_batch=settings.serve_batch_rows,
        max_in_flight=settings.serve_calls_in_flight,
        on_recording=instruments.count_recording,
    )
    stack.push_async_callback(batcher.aclose)  # before the session it uses closes
    inference = Inference(
        batcher=batcher,
        serving=serving,
        instruments=instruments,
        record=settings.record_predictions,
        router=router,
    )
    return serving, inference


def _on_alert(alert: Alert, instruments: Instruments, serving: Serving) -> None:
    """Each alert the API reads: counted, and a first champion deployed at once."""
    instruments.alerts.labels(alert.level).inc()
    serving.on_alert(alert)


def build_services(
    app: FastAPI, clients: Clients, background: Background, stack: AsyncExitStack
) -> Loops:
    """Each service with only the clients it uses, on `app.state` for the routes."""
    settings: ApiSettings = app.state.settings
    instruments: Instruments = app.state.instruments
    redis, registry, stream = clients.redis, clients.registry, clients.alerts
    jobs = JobStore(redis, history=settings.job_history)
    headers = DatasetHeaders(lambda: s3_config(settings).client(DATASET_HEADER_TIMEOUT))
    training = Training(
        settings=settings,
        ray=clients.ray,
        jobs=jobs,
        registry=registry,
        headers=headers,
        trainer_queue=TrainerQueue(redis),
    )
    moves = ChampionMoves(redis)
    catalog = ModelCatalog(
        settings=settings, definitions=ModelDefinitions(redis), moves=moves, headers=headers
    )
    predictions = PredictionStore(
        redis,
        max_predictions=settings.prediction_history,
        max_age_hours=settings.prediction_max_age_hours,
        max_labels=settings.label_history,
    )
    rollout_store = RolloutStore(redis)
    router = RolloutRouter(rollout_store, refresh_seconds=settings.rollout_refresh_seconds)
    serving, inference = _inference(settings, clients, catalog, instruments, stack, router)
    feed = AlertFeed(
        stream,
        max_clients=settings.sse_max_clients,
        max_replay=settings.sse_max_replay,
        on_alert=lambda alert: _on_alert(alert, instruments, serving),
    )
    instruments.sse_clients.set_function(lambda: feed.client_count)
    samples = DriftSamples(redis, max_rows=settings.drift_sample_rows)
    drift_monitor = DriftMonitor(
        settings=settings, registry=registry, samples=samples, alerts=stream
    )
    schedules_service = Schedules(
        settings=settings,
        store=ScheduleStore(redis),
        quarantine=clients.quarantine,
        training=training,
        catalog=catalog,
        drift=drift_monitor,
        registry=registry,
        alerts=stream,
        instruments=instruments,
    )
    app.state.catalog = catalog
    app.state.training = training
    app.state.inference = inference
    app.state.schedules = schedules_service
    app.state.alert_feed = feed
    app.state.model_report = ModelReport(settings=settings, registry=registry)
    app.state.readiness = Readiness(
        ray=clients.ray, registry=registry, alerts=stream, loops=background.health
    )
    app.state.quarantine = clients.quarantine
    app.state.drift = drift_monitor
    app.state.models = models = Models(
        settings=settings, registry=registry, history=moves, alerts=stream
    )
    closed_loop = _closed_loop(
        app, clients, catalog, training, models, predictions, rollout_store, router
    )
    reconciler = JobReconciler(
        settings=settings,
        ray=clients.ray,
        jobs=jobs,
        registry=registry,
        alerts=stream,
        history=moves,
        quarantine=clients.quarantine,
        catalog=catalog,
    )
    return Loops(
        feed=feed,
        reconciler=reconciler,
        schedules=schedules_service,
        serving=serving,
        closed_loop=closed_loop,
        training=training,
    )


@dataclass(frozen=True)
class ClosedLoop:
    rollouts: Rollouts
    live_watch: LiveWatch
    retraining: RetrainingLoop


def _closed_loop(
    app: FastAPI,
    clients: Clients,
    catalog: ModelCatalog,
    training: Training,
    models: Models,
    predictions: PredictionStore,
    rollout_store: RolloutStore,
    router: RolloutRouter,
) -> ClosedLoop:
    """Feedback and live metrics, rollouts, and each model's retraining policy."""
    settings: ApiSettings = app.state.settings
    registry, stream = clients.registry, clients.alerts
    app.state.feedback = feedback = Feedback(
        predictions, max_age_hours=settings.prediction_max_age_hours
    )
    live_watch = LiveWatch(
        settings=settings,
        feedback=feedback,
        catalog=catalog,
        alerts=stream,
        instruments=app.state.instruments,
    )
    app.state.rollouts = rollouts = Rollouts(
        settings=settings,
        store=rollout_store,
        predictions=predictions,
        models=models,
        registry=registry,
        catalog=catalog,
        router=router,
        alerts=stream,
    )
    app.state.retraining = retraining = RetrainingLoop(
        settings=settings,
        store=RetrainingStore(clients.redis),
        alerts=stream,
        catalog=catalog,
        registry=registry,
        training=training,
        rollouts=rollouts,
    )
    return ClosedLoop(rollouts=rollouts, live_watch=live_watch, retraining=retraining)


def start_loops(background: Background, loops: Loops, settings: ApiSettings) -> None:
    pings = settings.sse_ping_seconds
    background.start("alert-feed", lambda: loops.feed.run(background))
    background.start("sse-pings", lambda: loops.feed.ping_forever(background, pings))
    background.start("job-reconciler", lambda: loops.reconciler.run(background))
    background.start("scheduler", lambda: loops.schedules.run(background))
    if settings.auto_serve:
        background.start("auto-serve", lambda: loops.serving.keep_serving(background))
    if settings.warm_trainer and settings.warm_up_trainer:
        background.start("trainer-warm-up", lambda: loops.training.keep_trainer_warm(background))
    closed = loops.closed_loop
    background.start("rollouts", lambda: closed.rollouts.run(background))
    background.start("live-watch", lambda: closed.live_watch.run(background))
    background.start("retraining", lambda: closed.retraining.run(background))
