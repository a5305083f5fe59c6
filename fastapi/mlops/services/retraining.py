"""Each model's retraining policy carried out: a drift alert on its champion, or its
champion's live metric short of the gate, starts a training (one in flight per model,
one started per cooldown); with a canary policy the new version is held back from the
champion alias and, if it passes the gate, goes into an automatic canary that the
sequential test ends. Every step is in the model's history (`/models/{name}/history`)
and raises an alert; the canary's start and end are the rollout's own alerts.

The loop reads the alert stream as one consumer group across API processes, so each
alert is acted on once, and alerts that came while every API process was down are
acted on when one is back. Jobs are followed by their records, whoever ends them.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.dataset_headers import StorageUnavailable
from mlops.clients.mlflow_registry import MlflowRegistry, MlflowUnavailable
from mlops.clients.ray_jobs import RayJobsError
from mlops.clients.redis import AlertStream
from mlops.clients.redis.keys import RETRAINING_GROUP
from mlops.clients.redis.retraining import Claim, RetrainingStore
from mlops.contracts.alerts import Alert, AlertKind, AlertLevel
from mlops.contracts.jobs import JobInfo, JobStatus
from mlops.contracts.model_definition import ModelDefinition
from mlops.contracts.retraining import Retraining, RetrainingStep, Step, Trigger
from mlops.contracts.rollouts import RolloutEnd, RolloutMode, RolloutSpec
from mlops.ml.estimators import InvalidField
from mlops.services.job_records import MalformedJob, UnknownJob
from mlops.services.model_catalog import ModelCatalog, UnknownModel
from mlops.services.models import UnknownVersion
from mlops.services.rollouts import RolloutConflict, Rollouts
from mlops.services.training import TooManyTrainings, Training
from mlops.settings.api import ApiSettings

log = logging.getLogger(__name__)

_TRIGGERS = {AlertKind.DRIFT: Trigger.DRIFT, AlertKind.LIVE: Trigger.LIVE}
# Why a training could not be submitted (each leaves nothing behind).
_NOT_SUBMITTED = (
    TooManyTrainings,
    RayJobsError,
    MlflowUnavailable,
    StorageUnavailable,
    InvalidField,
)
_RECLAIM_AFTER_MS = 60_000  # an alert another API process took and never acknowledged
_CLAIM_WITHOUT_JOB_S = 120  # a claim whose process died before submitting its job
_BLOCK_MS_MAX = 5_000


class RetrainingLoop:
    def __init__(
        self,
        *,
        settings: ApiSettings,
        store: RetrainingStore,
        alerts: AlertStream,
        catalog: ModelCatalog,
        registry: MlflowRegistry,
        training: Training,
        rollouts: Rollouts,
    ) -> None:
        self._settings = settings
        self._store = store
        self._alerts = alerts
        self._catalog = catalog
        self._registry = registry
        self._training = training
        self._rollouts = rollouts
        self._consumer = f"{socket.gethostname()}-{os.getpid()}"

    async def run(self, background: Background) -> None:
        block_ms = max(1, int(min(self._settings.job_poll_seconds * 1000, _BLOCK_MS_MAX)))
        while background.running:
            try:
                await self.follow_jobs()
                for alert in await self._alerts.read_group(
                    RETRAINING_GROUP,
                    self._consumer,
                    block_ms=block_ms,
                    reclaim_after_ms=_RECLAIM_AFTER_MS,
                ):
                    await self.handle(alert)
                    await self._alerts.ack(RETRAINING_GROUP, alert.id)
                background.completed_round()
            except (RedisError, OSError, MlflowUnavailable) as exc:
                log.warning("retraining round skipped: %s", exc)
                await background.pause(self._settings.job_poll_seconds)

    async def handle(self, alert: Alert) -> None:
        """Act on one alert: a drift or live-performance alert may start a retraining;
        the end of a canary one started is its last step."""
        data = alert.data or {}
        if alert.kind is AlertKind.ROLLOUT and "outcome" in data:
            await self._canary_ended(RolloutEnd.model_validate(data))
        elif (trigger := _TRIGGERS.get(alert.kind)) and isinstance(data.get("model"), str):
            await self._signalled(trigger, data["model"], alert)

    async def follow_jobs(self) -> None:
        """Conclude every retraining whose job has ended (or never started)."""
        for retraining in await self._store.in_flight():
            if retraining.job_id is None:
                age = (datetime.now(UTC) - retraining.since).total_seconds()
                if age > _CLAIM_WITHOUT_JOB_S and await self._store.conclude(retraining):
                    why = "the API process stopped before submitting its job"
                    await self._step(retraining, Step.NOT_STARTED, why, "error")
                continue
            try:
                job = await self._training.get(retraining.job_id)
            except (UnknownJob, MalformedJob) as exc:
                if await self._store.conclude(retraining):
                    detail = f"job {retraining.job_id}'s record is unreadable: {exc}"
                    await self._step(retraining, Step.FAILED, detail, "error")
                continue
            if job.status.is_terminal and await self._store.conclude(retraining):
                await self._job_ended(retraining, job)

    async def _signalled(self, trigger: Trigger, name: str, alert: Alert) -> None:
        try:
            model = await self._catalog.get(name)
        except UnknownModel:
            return
        policy = model.spec.retraining
        wanted = policy.on_drift if trigger is Trigger.DRIFT else policy.on_live_below_gate
        if not wanted or not await self._about_the_champion(model, trigger, alert):
            return
        retraining = Retraining(
            model=name, trigger=trigger, since=datetime.now(UTC), cause=alert.text
        )
        claim = await self._store.claim(retraining, round(policy.cooldown_minutes * 60))
        if claim is not Claim.CLAIMED:
            log.info("%s: %s alert, no retraining (%s)", name, trigger, claim)
            return
        try:
            job_id = await self._training.submit(
                model, {}, source=f"retraining:{trigger}", promote=policy.canary is None
            )
        except _NOT_SUBMITTED as exc:
            await self._store.conclude(retraining)
            detail = f"Retraining {name} on its {trigger} alert could not start: {exc}"
            await self._step(retraining, Step.NOT_STARTED, detail, "error")
            return
        started = retraining.model_copy(update={"job_id": job_id})
        await self._store.replace(retraining, started)
        then = (
            f"a version that passes the gate goes into a {policy.canary.percent}% canary "
            "decided by the sequential test"
            if policy.canary
            else "the gate decides whether its version becomes champion"
        )
        detail = f"Retraining {name} on its {trigger} alert: job {job_id} started; {then}"
        await self._step(started, Step.STARTED, detail, "info")

    async def _about_the_champion(
        self, model: ModelDefinition, trigger: Trigger, alert: Alert
    ) -> bool:
        """A live alert may be about a challenger in a rollout: that one the rollout
        judges. Drift checks are of the champion only."""
        if trigger is Trigger.DRIFT:
            return True
        champion = await self._registry.alias_version(
            model.registered_model, self._settings.champion_alias
        )
        return (alert.data or {}).get("version") == champion

    async def _job_ended(self, retraining: Retraining, job: JobInfo) -> None:
        done = retraining.model_copy(update={"version": job.model_version})
        name, version, why = done.model, job.model_version, job.promotion_reason
        if job.status is not JobStatus.SUCCEEDED:
            detail = f"Retraining {name}: job {job.job_id} {job.status}: {job.error}"
            await self._step(done, Step.FAILED, detail, "error")
        elif job.promoted:
            detail = f"Retraining {name}: version {version} is the champion ({why})"
            await self._step(done, Step.PROMOTED, detail, "success")
        elif not job.held_for_rollout:
            detail = f"Retraining {name}: version {version} kept out by the gate ({why})"
            await self._step(done, Step.NOT_PROMOTED, detail, "warning")
        else:
            await self._start_canary(done)

    async def _start_canary(self, done: Retraining) -> None:
        name, version = done.model, done.version
        assert version is not None  # a job held a version back: it registered one
        try:
            model = await self._catalog.get(name)
            canary = model.spec.retraining.canary
            if canary is None:
                raise RolloutConflict("the model's policy no longer asks for a canary")
            spec = RolloutSpec(version=version, mode=RolloutMode.CANARY, auto=True, **dict(canary))
            rollout = await self._rollouts.start(model, spec)
        except (UnknownModel, UnknownVersion, RolloutConflict, MlflowUnavailable) as exc:
            detail = (
                f"Retraining {name}: version {version} passed the gate, but no canary "
                f"started ({exc}): promote it or roll it out by hand"
            )
            await self._step(done, Step.CANARY_NOT_STARTED, detail, "warning")
            return
        await self._store.watch_rollout(rollout.id, done)
        detail = (
            f"Retraining {name}: version {version} in a {rollout.percent}% canary beside "
            f"champion version {rollout.champion_version}, decided by the sequential test"
        )
        await self._step(done, Step.CANARY_STARTED, detail, None)  # the rollout alerted

    async def _canary_ended(self, end: RolloutEnd) -> None:
        retraining = await self._store.take_rollout(end.rollout.id)
        if retraining is None:
            return  # not a retraining's canary
        detail = (
            f"Retraining {retraining.model}: the canary of version {end.rollout.version} "
            f"{end.outcome}: {end.reason}"
        )
        await self._step(retraining, Step.CANARY_ENDED, detail, None)  # the rollout alerted

    async def _step(
        self, retraining: Retraining, step: Step, detail: str, level: AlertLevel | None
    ) -> None:
        """Record a step in the model's history and, unless another alert told it
        already, alert it."""
        log.info("%s", detail)
        entry = RetrainingStep(
            at=datetime.now(UTC),
            step=step,
            trigger=retraining.trigger,
            job_id=retraining.job_id,
            version=retraining.version,
            detail=detail,
        )
        await self._store.record(retraining.model, entry)
        if level is not None:
            data = {"model": retraining.model, **entry.model_dump(mode="json", exclude={"at"})}
            await self._alerts.publish(level, detail, kind=AlertKind.RETRAINING, data=data)

    async def steps(self, model: ModelDefinition, limit: int) -> list[RetrainingStep]:
        return await self._store.steps(model.name, limit)
