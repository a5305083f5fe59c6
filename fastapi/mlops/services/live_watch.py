"""Live performance watched: every MLOPS_LIVE_CHECK_SECONDS, each model's versions'
metrics on the last hour's labels become Prometheus gauges, and a version whose gate
metric falls short of its model's threshold on at least MLOPS_LIVE_MIN_LABELS labels
raises an alert (once an hour per model and version, whichever API process sees it)."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from mlops.background import Background
from mlops.clients.redis import AlertStream
from mlops.contracts.alerts import AlertKind
from mlops.contracts.model_definition import ModelDefinition
from mlops.feedback_schemas import Window
from mlops.services.feedback import Feedback, VersionLive
from mlops.services.model_catalog import ModelCatalog
from mlops.settings.api import ApiSettings
from mlops.telemetry import Instruments

log = logging.getLogger(__name__)
ALERT_EVERY_S = 3600


class LiveWatch:
    def __init__(
        self,
        *,
        settings: ApiSettings,
        feedback: Feedback,
        catalog: ModelCatalog,
        alerts: AlertStream,
        instruments: Instruments,
    ) -> None:
        self._settings = settings
        self._feedback = feedback
        self._catalog = catalog
        self._alerts = alerts
        self._instruments = instruments

    async def run(self, background: Background) -> None:
        while background.running:
            try:
                await self.check()
                background.completed_round()
            except (RedisError, OSError) as exc:
                log.warning("live metrics skipped: %s", exc)
            await background.pause(self._settings.live_check_seconds)

    async def check(self) -> None:
        gauges = self._instruments
        gauges.live_metric.clear()
        gauges.live_labels.clear()
        for model in await self._catalog.all():
            for version in await self._feedback.live(model, window=Window.HOUR, last=None):
                gauges.live_labels.labels(model.name, version.version).set(version.labels)
                for metric, estimate in version.metrics.items():
                    gauges.live_metric.labels(model.name, version.version, metric).set(
                        estimate.value
                    )
                await self._alert_if_short(model, version)

    async def _alert_if_short(self, model: ModelDefinition, version: VersionLive) -> None:
        gate = model.spec.gate
        live = version.metrics.get(gate.metric)
        if (
            gate.threshold is None
            or live is None
            or version.labels < self._settings.live_min_labels
            or gate.metric.better_or_equal(live.value, gate.threshold)
        ):
            return
        await self._alerts.publish_once_in(
            f"live:{model.name}:{version.version}",
            ALERT_EVERY_S,
            "warning",
            f"{model.name} version {version.version} live {gate.metric} {live.value:.4g} "
            f"(95 % interval {live.low:.4g} to {live.high:.4g}) on {version.labels} labels in "
            f"the last hour: short of its gate, {gate.metric} {gate.metric.comparison} "
            f"{gate.threshold:g}",
            kind=AlertKind.LIVE,
            data={
                "model": model.name,
                "version": version.version,
                "metric": gate.metric.value,
                "value": live.value,
                "labels": version.labels,
                "threshold": gate.threshold,
            },
        )
