"""Rollouts: a challenger version beside a model's champion, in shadow or canary, ended
by a person, by its time limit, by the champion moving, or by the sequential test
(`mlops.sequential`) when `auto`.

Any API process may start, report or end a rollout; each runs the loop that checks
them, and an end is recorded once (`RolloutStore.end`), by whichever process gets there
first: only that one promotes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.mlflow_registry import MlflowRegistry, MlflowUnavailable
from mlops.clients.redis import AlertStream
from mlops.clients.redis.predictions import PredictionStore
from mlops.clients.redis.rollouts import RolloutStore
from mlops.contracts.alerts import AlertKind, AlertLevel
from mlops.contracts.model_definition import Metric, ModelDefinition
from mlops.contracts.predictions import Arm, LabelledPrediction
from mlops.contracts.rollouts import Rollout, RolloutEnd, RolloutMode, RolloutOutcome, RolloutSpec
from mlops.feedback_schemas import live_estimates
from mlops.rollout_schemas import RolloutArm, RolloutDifference, RolloutReport
from mlops.sequential import (
    Decision,
    Floats,
    Interval,
    decide,
    interval,
    label_scores,
    paired_interval,
    score_tolerance,
)
from mlops.services.feedback import estimates
from mlops.services.model_catalog import ModelCatalog, UnknownModel
from mlops.services.models import ChampionConflict, Models, UnknownVersion
from mlops.services.rollout_routing import RolloutRouter
from mlops.settings.api import ApiSettings

log = logging.getLogger(__name__)
AGREEMENT_SAMPLE = 10_000  # recorded predictions read for a shadow's agreement


class RolloutConflict(Exception):
    """The rollout cannot start or end (and why): 409."""


class NoRollout(Exception):
    """The model has no rollout, in progress or ended: 404."""


class Rollouts:
    def __init__(
        self,
        *,
        settings: ApiSettings,
        store: RolloutStore,
        predictions: PredictionStore,
        models: Models,
        registry: MlflowRegistry,
        catalog: ModelCatalog,
        router: RolloutRouter,
        alerts: AlertStream,
    ) -> None:
        self._settings = settings
        self._store = store
        self._predictions = predictions
        self._models = models
        self._registry = registry
        self._catalog = catalog
        self._router = router
        self._alerts = alerts

    async def start(self, model: ModelDefinition, spec: RolloutSpec) -> Rollout:
        champion = await self._ready_challenger(model, spec.version)
        rollout = Rollout(
            **spec.model_dump(),
            id=secrets.token_hex(8),
            model=model.name,
            champion_version=champion,
            started_at=datetime.now(UTC),
        )
        if not await self._store.start(rollout):
            raise RolloutConflict(
                f"{model.name} has a rollout in progress: end it first (mlops rollout abort"
                f" -m {model.name}, or DELETE /models/{model.name}/rollouts)"
            )
        self._router.forget(model.name)
        decided = "the sequential test decides" if spec.auto else "ended by hand"
        await self._alerts.publish(
            "info",
            f"Rollout of {model.name} version {spec.version} started: {spec.mode} at "
            f"{spec.percent}% beside champion version {champion}; {decided}",
            kind=AlertKind.ROLLOUT,
            data=rollout.model_dump(mode="json"),
        )
        return rollout

    async def _ready_challenger(self, model: ModelDefinition, version: str) -> str:
        """The champion's version, once the challenger is found fit to roll out."""
        listed = await self._models.versions(model)
        champion = listed.champion_version
        found = next((v for v in listed.versions if v.version == version), None)
        if found is None:
            raise UnknownVersion(f"{model.name} has no version {version}")
        if found.foreign:
            raise RolloutConflict(f"version {version} cannot be served: {found.foreign}")
        if champion is None:
            raise RolloutConflict(f"{model.name} has no champion to roll out beside")
        if champion == version:
            raise RolloutConflict(f"version {version} is {model.name}'s champion already")
        return champion

    async def report(self, model: ModelDefinition) -> RolloutReport:
        """The rollout in progress, else the last one ended, with its statistics."""
        ending = None
        rollout = await self._store.active(model.name)
        if rollout is None:
            ended = await self._store.ended(model.name, 1)
            if not ended:
                return RolloutReport(
                    model=model.name, rollout=None, active=False, alpha=self._settings.rollout_alpha
                )
            ending, rollout = ended[0], ended[0].rollout
        return await self._report(model, rollout, ending, with_agreement=True)

    async def abort(self, model: ModelDefinition, reason: str) -> RolloutEnd:
        rollout = await self._store.active(model.name)
        if rollout is None:
            raise NoRollout(f"{model.name} has no rollout in progress")
        ending = await self._end(rollout, RolloutOutcome.ABORTED, f"by hand: {reason}")
        if ending is None:
            raise RolloutConflict("the rollout ended meanwhile")
        return ending

    async def run(self, background: Background) -> None:
        """Check every rollout in progress, every MLOPS_ROLLOUT_CHECK_SECONDS."""
        while background.running:
            try:
                for rollout in await self._store.all_active():
                    await self._check(rollout)
                background.completed_round()
            except (MlflowUnavailable, RedisError, OSError) as exc:
                log.warning("rollout checks skipped: %s", exc)
            await background.pause(self._settings.rollout_check_seconds)

    async def _check(self, rollout: Rollout) -> None:
        try:
            model = await self._catalog.get(rollout.model)
        except UnknownModel:
            await self._end(rollout, RolloutOutcome.ABORTED, "its model was archived")
            return
        champion = await self._registry.alias_version(
            model.registered_model, self._settings.champion_alias
        )
        if champion != rollout.champion_version:
            why = f"the champion moved to version {champion} meanwhile"
            await self._end(rollout, RolloutOutcome.SUPERSEDED, why)
        elif datetime.now(UTC) >= rollout.ends_at:
            why = f"undecided after max_hours={rollout.max_hours:g}"
            await self._end(rollout, RolloutOutcome.EXPIRED, why)
        elif rollout.auto:
            report = await self._report(model, rollout, None, with_agreement=False)
            if report.decision is not Decision.CONTINUE:
                await self._decided(model, rollout, report)

    async def _decided(
        self, model: ModelDefinition, rollout: Rollout, report: RolloutReport
    ) -> None:
        d, champion, challenger = report.difference, report.champion, report.challenger
        assert d and champion and challenger  # a decision needs labels of both sides
        said = (
            f"challenger minus champion {d.value:+.4f} per label, interval [{d.low:+.4f}, "
            f"{d.high:+.4f}] at alpha {report.alpha:g}, on {challenger.labels} and "
            f"{champion.labels} labels"
        )
        if report.decision is Decision.ABORT:
            await self._end(rollout, RolloutOutcome.ABORTED, f"worse: {said}")
            return
        ending = await self._end(rollout, RolloutOutcome.PROMOTED, f"better: {said}")
        if ending is not None:  # this process ended it: it promotes
            try:
                await self._models.promote(
                    model, rollout.version, reason=f"rollout {rollout.id}: {said}", by="rollout"
                )
            except ChampionConflict as exc:
                log.warning("rollout %s decided, promotion refused: %s", rollout.id, exc)

    async def _end(
        self, rollout: Rollout, outcome: RolloutOutcome, reason: str
    ) -> RolloutEnd | None:
        ending = RolloutEnd(rollout=rollout, outcome=outcome, reason=reason, at=datetime.now(UTC))
        if not await self._store.end(ending):
            return None
        self._router.forget(rollout.model)
        level: AlertLevel = "success" if outcome is RolloutOutcome.PROMOTED else "warning"
        await self._alerts.publish(
            level,
            f"Rollout of {rollout.model} version {rollout.version} {outcome}: {reason}",
            kind=AlertKind.ROLLOUT,
            data={"model": rollout.model, **ending.model_dump(mode="json")},
        )
        return ending

    async def _report(
        self,
        model: ModelDefinition,
        rollout: Rollout,
        ending: RolloutEnd | None,
        *,
        with_agreement: bool,
    ) -> RolloutReport:
        since = int(rollout.started_at.timestamp() * 1000)
        until = int(ending.at.timestamp() * 1000) if ending else None
        labelled = [
            item
            for item in await self._predictions.labelled_since(model.name, since)
            if until is None or item.labelled_at_ms <= until
        ]
        champion = [
            i for i in labelled if i.arm is Arm.CHAMPION and i.version == rollout.champion_version
        ]
        challenger = [
            i
            for i in labelled
            if i.arm in (Arm.CANARY, Arm.SHADOW) and i.version == rollout.version
        ]
        # The statistics are numpy work over every label since the start: off the event
        # loop, which answers predictions meanwhile.
        found, tolerance, champion_side, challenger_side = await asyncio.to_thread(
            lambda: (
                self._interval(model, rollout, champion, challenger),
                _tolerance(model, champion),
                _arm(model, rollout.champion_version, champion),
                _arm(model, rollout.version, challenger),
            )
        )
        agreement = None
        if with_agreement and rollout.mode is RolloutMode.SHADOW:
            agreement = await self._agreement(model.name, since)
        return RolloutReport(
            model=model.name,
            rollout=rollout,
            active=ending is None,
            ended=ending,
            champion=champion_side,
            challenger=challenger_side,
            difference=RolloutDifference(value=found.difference, low=found.low, high=found.high)
            if found
            else None,
            decision=decide(found, tolerance=tolerance, min_labels=rollout.min_labels)
            if found
            else Decision.CONTINUE,
            alpha=self._settings.rollout_alpha,
            agreement=agreement,
        )

    def _interval(
        self,
        model: ModelDefinition,
        rollout: Rollout,
        champion: list[LabelledPrediction],
        challenger: list[LabelledPrediction],
    ) -> Interval | None:
        metric, alpha = model.spec.gate.metric, self._settings.rollout_alpha
        if rollout.mode is RolloutMode.SHADOW:
            # Both sides answered the same requests: the differences are paired.
            mine = {i.prediction_id.removesuffix("s"): i for i in challenger}
            pairs = [(i, mine[i.prediction_id]) for i in champion if i.prediction_id in mine]
            if not pairs:
                return None
            a = _scores(metric, [p[0] for p in pairs])
            b = _scores(metric, [p[1] for p in pairs])
            return paired_interval(b - a, alpha=alpha)
        both = sorted(champion + challenger, key=lambda i: i.labelled_at_ms)
        taken = np.array([i.arm is Arm.CANARY for i in both])
        return interval(taken, _scores(metric, both), share=rollout.percent / 100, alpha=alpha)

    async def _agreement(self, model: str, since_ms: int) -> float | None:
        """Of the last AGREEMENT_SAMPLE requests both sides answered, the share answered
        alike (regression: within 1 % of each other)."""
        recent = await self._predictions.recent(model, AGREEMENT_SAMPLE)
        outputs: dict[str, dict[Arm, float]] = defaultdict(dict)
        for p in recent:
            if p.predicted_at_ms >= since_ms:
                outputs[p.prediction_id.removesuffix("s")][p.arm] = float(p.output)
        pairs = [(o[Arm.CHAMPION], o[Arm.SHADOW]) for o in outputs.values() if len(o) == 2]
        if not pairs:
            return None
        alike = sum(abs(a - b) <= 0.01 * max(abs(a), abs(b), 1e-12) for a, b in pairs)
        return alike / len(pairs)


def _scores(metric: Metric, items: list[LabelledPrediction]) -> Floats:
    outputs = np.array([float(i.output) for i in items])
    labels = np.array([float(i.label) for i in items])
    return label_scores(metric, outputs, labels)


def _tolerance(model: ModelDefinition, champion: list[LabelledPrediction]) -> float:
    gate = model.spec.gate
    outputs = np.array([float(i.output) for i in champion])
    labels = np.array([float(i.label) for i in champion])
    return score_tolerance(gate.metric, gate.tolerance, outputs, labels)


def _arm(model: ModelDefinition, version: str, items: list[LabelledPrediction]) -> RolloutArm:
    live = live_estimates(estimates(model.spec.task, items))
    return RolloutArm(version=version, labels=len(items), live=live)
