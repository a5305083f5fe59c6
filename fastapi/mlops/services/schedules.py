"""Periodic training and "model is stale" watches that survive restarts and replicas.

A schedule is a JSON record in Redis with its creation time and when it runs: every
N minutes from then, or at a cron expression's times (mlops.cadence, which numbers the
runs the same way on every replica). Every API process runs the same loop in its
event loop: it sleeps until the next run falls due (or a schedule is added or removed,
here or, seen within the sync period, in another replica), claims that run in Redis,
and carries it out only if the claim is its own. So each run happens once whatever the
number of replicas, and runs that fell due while no API was up become one run
(coalesced), logged with how many were missed.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from mlops.background import Background
from mlops.cadence import Cadence, Cron, Every
from mlops.clients.mlflow_registry import MlflowRegistry, MlflowUnavailable
from mlops.clients.quarantine import Quarantine
from mlops.clients.ray_jobs import RayJobsError
from mlops.clients.redis import AlertStream
from mlops.clients.schedule_store import ScheduleRecord, ScheduleStore
from mlops.contracts.alerts import AlertKind
from mlops.contracts.model_definition import ModelDefinition
from mlops.ml.estimators import InvalidField
from mlops.schemas import Cadenced, ScheduleInfo, ScheduleKind, TuneRequest
from mlops.services.drift import DriftMonitor
from mlops.services.model_catalog import ModelCatalog, UnknownModel
from mlops.services.training import ClusterTooSmall, TooManyTrainings, Training
from mlops.settings.api import ApiSettings
from mlops.telemetry import Instruments

log = logging.getLogger(__name__)


class TooManySchedules(Exception):
    """The limit of schedules and watches is reached; nothing was added."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} schedules and watches exist (MLOPS_MAX_SCHEDULES);"
            " remove one with DELETE /kill_scheduled_job/{id}"
        )


class MalformedSchedule(ValueError):
    """A stored schedule whose parameters no run could use (moved to the quarantine)."""


def checked(record: ScheduleRecord) -> ScheduleRecord:
    """The record if its parameters are usable, as the API checked them when it was
    added; MalformedSchedule saying what is wrong otherwise."""
    params = record.params
    if params.get("tune") is not None:
        try:
            TuneRequest.model_validate(params["tune"])
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in ("tune", *problem["loc"]))
            raise MalformedSchedule(f"unusable parameters: {where}: {problem['msg']}") from None
    if not isinstance(params.get("hyperparameters", {}), dict):
        raise MalformedSchedule("unusable parameters: hyperparameters must be an object")
    threshold = params.get("threshold")
    if threshold is not None and not isinstance(threshold, int | float):
        raise MalformedSchedule(f"unusable parameters: threshold {threshold!r} is not a number")
    return record


class Schedules:
    """This process's view of the shared schedules, and its scheduling loop."""

    def __init__(
        self,
        *,
        settings: ApiSettings,
        store: ScheduleStore,
        quarantine: Quarantine,
        training: Training,
        catalog: ModelCatalog,
        drift: DriftMonitor,
        registry: MlflowRegistry,
        alerts: AlertStream,
        instruments: Instruments,
    ) -> None:
        self._settings = settings
        self._store = store
        self._quarantine = quarantine
        self._training = training
        self._catalog = catalog
        self._drift = drift
        self._registry = registry
        self._alerts = alerts
        self._instruments = instruments
        self._changed = asyncio.Event()
        self._done: dict[str, int] = {}  # schedule id -> last run number this process settled
        # schedule id -> (its record, its cadence): a cron expression parsed once.
        self._cadences: dict[str, tuple[ScheduleRecord, Cadence]] = {}
        # Another replica's new schedule is seen within this long: well before its first run.
        self._sync_seconds = min(5.0, settings.schedule_minute_seconds / 2)

    def _cadence(self, record: ScheduleRecord) -> Cadence:
        """When the record's runs fall due; ValueError for a cron that cannot run."""
        known = self._cadences.get(record.schedule_id)
        if known is not None and known[0] == record:
            return known[1]
        cadence: Cadence
        if record.cron is not None:
            cadence = Cron(record.cron, record.timezone or "UTC", record.created_at)
        else:
            minute = self._settings.schedule_minute_seconds
            cadence = Every(record.created_at, (record.minutes or 0) * minute)
        self._cadences[record.schedule_id] = (record, cadence)
        return cadence

    async def add(
        self,
        *,
        kind: ScheduleKind,
        when: Cadenced,
        model: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        threshold: float | None = None,
        dataset_uri: str | None = None,
        target_column: str | None = None,
        tune: TuneRequest | None = None,
    ) -> ScheduleInfo:
        """Validate and store a schedule of `model` (default: the default model); raises
        UnknownModel, InvalidField or TooManySchedules."""
        definition = await self._catalog.get(model)
        params: dict[str, Any] = {}
        if kind == "drift":
            params["threshold"] = threshold or self._settings.drift_threshold
        if kind == "training":
            training = self._training
            params["hyperparameters"] = training.check_hyperparameters(
                definition, hyperparameters or {}
            )
            # Checked now (a target must be the model's); the model's own target is used.
            uri, _ = await training.dataset(definition, dataset_uri, target_column)
            if dataset_uri is not None:
                params["dataset_uri"] = uri
            if tune is not None:
                try:
                    training.check_search(definition, tune)
                    await training.dataset(definition, tune.dataset_uri, tune.target_column)
                except InvalidField as exc:
                    raise exc.within("tune") from exc
                params["tune"] = tune.model_dump(exclude={"model"})
        record = ScheduleRecord(
            schedule_id=f"{kind}-{uuid.uuid4().hex[:12]}",
            kind=kind,
            minutes=when.minutes,
            created_at=datetime.now(UTC),
            params=params,
            model=definition.name,
            cron=when.cron,
            timezone=when.timezone if when.cron is not None else None,
        )
        if not await self._store.add(record, limit=self._settings.max_schedules):
            raise TooManySchedules(self._settings.max_schedules)
        self._changed.set()
        log.info("added schedule %s: %s %s", record.schedule_id, kind, _when(record))
        return self._info(record, runs=0, last_run_at=None)

    async def remove(self, schedule_id: str) -> bool:
        removed = await self._store.remove(schedule_id)
        if removed:
            self._changed.set()
            log.info("removed schedule %s", schedule_id)
        return removed

    async def list(self) -> list[ScheduleInfo]:
        """Every usable schedule, oldest first, with its runs across all replicas (the
        scheduling loop moves the others to the quarantine)."""
        records = sorted(await self._usable(quarantine=False), key=lambda r: r.created_at)
        counts = await self._store.run_counts([r.schedule_id for r in records])
        return [
            self._info(record, runs=count.runs, last_run_at=count.last_run_at)
            for record in records
            if (count := counts[record.schedule_id])
        ]

    def _info(
        self, record: ScheduleRecord, *, runs: int, last_run_at: datetime | None
    ) -> ScheduleInfo:
        return ScheduleInfo(
            schedule_id=record.schedule_id,
            model=record.model or self._catalog.default_name,
            kind=record.kind,
            minutes=record.minutes,
            cron=record.cron,
            timezone=record.timezone,
            hyperparameters=record.params.get("hyperparameters"),
            dataset_uri=record.params.get("dataset_uri"),
            target_column=record.params.get("target_column"),
            tune=record.params.get("tune"),
            threshold=record.params.get("threshold"),
            created_at=record.created_at,
            next_run_time=self._cadence(record).next_run_time(datetime.now(UTC)),
            last_run_at=last_run_at,
            runs=runs,
        )

    async def run(self, background: Background) -> None:
        """The scheduling loop: carry out what falls due until the app stops."""
        if legacy := await self._store.drop_legacy_pickles():
            log.warning(
                "removed %d schedule(s) kept as pickles by the previous scheduler, never "
                "loaded (a pickle runs code): %s; create them again",
                len(legacy),
                ", ".join(legacy),
            )
        while background.running:
            self._changed.clear()  # before reading: a change made meanwhile wakes the next
            try:
                wait = await self._run_due(datetime.now(UTC))
                background.completed_round()
            except (RedisError, OSError) as exc:
                log.warning("schedules unavailable, retrying: %s", exc)
                wait = self._sync_seconds
            await background.pause_until(self._changed, min(wait, self._sync_seconds))

    async def _usable(self, *, quarantine: bool) -> builtins.list[ScheduleRecord]:
        """The stored schedules a run can use; with `quarantine`, the others are moved
        aside, each once, so one bad record never holds the others back."""
        records, malformed = await self._store.records()
        usable: builtins.list[ScheduleRecord] = []
        for record in records:
            try:
                self._cadence(checked(record))
                usable.append(record)
            except MalformedSchedule as exc:
                malformed[record.schedule_id] = str(exc)
            except ValueError as exc:  # InvalidCron, InvalidTimezone
                malformed[record.schedule_id] = f"unusable cron: {exc}"
        live = {record.schedule_id for record in usable}
        self._cadences = {k: v for k, v in self._cadences.items() if k in live}
        if quarantine:
            for schedule_id, reason in malformed.items():
                await self._quarantine.schedule(schedule_id, reason)
        return usable

    async def _run_due(self, now: datetime) -> float:
        """Carry out every run that has fallen due; seconds until the next one."""
        records = await self._usable(quarantine=True)
        live = {record.schedule_id for record in records}
        self._done = {key: run for key, run in self._done.items() if key in live}
        cadences = {record.schedule_id: self._cadence(record) for record in records}
        due = [
            (record, run)
            for record in records
            if (run := cadences[record.schedule_id].due(now))
            > self._done.get(record.schedule_id, 0)
        ]
        # Concurrently, so a slow run (MLflow timing out) does not hold the others back.
        await asyncio.gather(*(self._run_once(record, run) for record, run in due))
        if not records:
            return self._sync_seconds
        later = datetime.now(UTC)
        upcoming = [cadence.next_run_time(later) for cadence in cadences.values()]
        soonest = min((time for time in upcoming if time is not None), default=None)
        if soonest is None:
            return self._sync_seconds
        return max(0.0, (soonest - later).total_seconds()) + 0.005

    async def _run_once(self, record: ScheduleRecord, run: int) -> None:
        """Claim and carry out one run. Its failure is its own: logged and counted, it
        never stops the other schedules' runs nor the loop."""
        self._done[record.schedule_id] = run
        try:
            if await self._claim(record, run):
                await self._carry_out(record, run)
        except (MlflowUnavailable, RayJobsError, RedisError, OSError) as exc:
            self._instruments.schedule_runs.labels(record.kind, "failed").inc()
            log.warning("schedule %s run %d failed: %s", record.schedule_id, run, exc)
        except Exception:
            self._instruments.schedule_runs.labels(record.kind, "failed").inc()
            log.exception("schedule %s run %d failed unexpectedly", record.schedule_id, run)

    async def _claim(self, record: ScheduleRecord, run: int) -> bool:
        """True if this replica carries the run out; counts it, and logs coalesced runs."""
        cadence = self._cadence(record)
        span = cadence.span(run)
        if not await self._store.claim(record.schedule_id, run, period_seconds=span):
            log.debug("schedule %s run %d taken by another replica", record.schedule_id, run)
            return False
        before = await self._store.record_run(record.schedule_id, run, datetime.now(UTC))
        if before.last_run is not None and (missed := cadence.missed(before.last_run, run)):
            log.warning(
                "schedule %s: %d run(s) missed while no API was up, coalesced into this one",
                record.schedule_id,
                missed,
            )
        return True

    async def users_of(self, model: str) -> builtins.list[str]:
        """The schedules and watches of a model, by id."""
        default = self._catalog.default_name
        records = await self._usable(quarantine=False)
        return [r.schedule_id for r in records if (r.model or default) == model]

    async def _carry_out(self, record: ScheduleRecord, run: int) -> None:
        try:
            model = await self._catalog.get(record.model)
        except UnknownModel as exc:  # archived meanwhile (DELETE /models checks first)
            self._instruments.schedule_runs.labels(record.kind, "skipped").inc()
            log.warning("schedule %s run %d skipped: %s", record.schedule_id, run, exc)
            return
        if record.kind == "training":
            await self._submit_training(record, model, run)
        elif record.kind == "drift":
            threshold = record.params.get("threshold")
            await self._drift.check_and_alert(model, threshold, schedule_id=record.schedule_id)
            self._instruments.schedule_runs.labels(record.kind, "checked").inc()
        else:
            await self._check_staleness(record, model, run)
            self._instruments.schedule_runs.labels(record.kind, "checked").inc()

    async def _submit_training(
        self, record: ScheduleRecord, model: ModelDefinition, run: int
    ) -> None:
        schedule_id = record.schedule_id
        params = record.params
        try:
            if params.get("tune"):
                search = TuneRequest.model_validate(params["tune"])
                job_id = await self._training.submit_search(model, search, source=schedule_id)
            else:
                job_id = await self._training.submit(
                    model,
                    params.get("hyperparameters", {}),
                    dataset_uri=params.get("dataset_uri"),
                    target_column=params.get("target_column"),
                    source=schedule_id,
                )
        except (TooManyTrainings, ClusterTooSmall, MlflowUnavailable, InvalidField) as exc:
            self._instruments.schedule_runs.labels(record.kind, "skipped").inc()
            log.warning("schedule %s run %d skipped: %s", schedule_id, run, exc)
            await self._alerts.publish(
                "warning",
                f"Schedule {schedule_id} skipped a run: {exc}",
                kind=AlertKind.SCHEDULE,
                data={"schedule_id": schedule_id, "model": model.name},
            )
            return
        self._instruments.schedule_runs.labels(record.kind, "submitted").inc()
        log.info("schedule %s run %d submitted training job %s", schedule_id, run, job_id)

    async def _check_staleness(
        self, record: ScheduleRecord, model: ModelDefinition, run: int
    ) -> None:
        """Alert when the model's newest version is older than the time since the run
        before this one (the period), or absent."""
        latest = await self._registry.latest_version(model.registered_model)
        data: dict[str, Any] = {
            "model": model.name,
            "schedule_id": record.schedule_id,
            "minutes": record.minutes,
            "cron": record.cron,
        }
        if latest is None:
            await self._alerts.publish(
                "warning",
                f"No version of {model.name} is registered yet: "
                "trigger a training run to create one.",
                kind=AlertKind.WATCH,
                data=data,
            )
            return
        window = timedelta(seconds=self._cadence(record).span(run))
        if datetime.now(UTC) - latest.created_at > window:
            since = (
                f"in the last {record.minutes} minutes"
                if record.minutes is not None
                else f"since {(datetime.now(UTC) - window):%Y-%m-%d %H:%M} UTC (cron "
                f"{record.cron!r} in {record.timezone})"
            )
            name = "" if model.name == self._catalog.default_name else f" {model.name}"
            await self._alerts.publish(
                "warning",
                f"Model{name} has not been updated {since}.",
                kind=AlertKind.WATCH,
                data={**data, "version": latest.version},
            )


def _when(record: ScheduleRecord) -> str:
    if record.cron is not None:
        return f"at {record.cron!r} in {record.timezone}"
    return f"every {record.minutes} min"
