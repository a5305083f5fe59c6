"""Live performance watched: every MLOPS_LIVE_CHECK_SECONDS, each model's versions'
metrics on the last hour's labels become Prometheus gauges, and a version whose gate
metric falls short of its model's threshold on at least MLOPS_LIVE_MIN_LABELS labels
raises an alert (once an hour per model and version, whichever API process sees it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import Gauge
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
        # The gauges' label sets this process shows, to remove those no longer measured.
        self._shown_labels: set[tuple[str, ...]] = set()
        self._shown_metrics: set[tuple[str, ...]] = set()

    async def run(self, background: Background) -> None:
        while background.running:
            try:
                await self.check()
                background.completed_round()
            except (RedisError, OSError) as exc:
                log.warning("live metrics skipped: %s", exc)
            await background.pause(self._settings.live_check_seconds)

    async def check(self) -> None:
        """One round: every model's versions measured, then the gauges set at once and
        those of versions no longer measured removed, so a scrape meanwhile never finds
        them cleared."""
        labels: dict[tuple[str, ...], float] = {}
        metrics: dict[tuple[str, ...], float] = {}
        for model in await self._catalog.all():
            for version in await self._feedback.live(model, window=Window.HOUR, last=None):
                labels[(model.name, version.version)] = version.labels
                for metric, estimate in version.metrics.items():
                    metrics[(model.name, version.version, metric)] = estimate.value
                await self._alert_if_short(model, version)
        self._shown_labels = _show(self._instruments.live_labels, labels, self._shown_labels)
        self._shown_metrics = _show(self._instruments.live_metric, metrics, self._shown_metrics)

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


def _show(
    gauge: Gauge, values: Mapping[tuple[str, ...], float], shown: set[tuple[str, ...]]
) -> set[tuple[str, ...]]:
    """`values` on `gauge`, and the label sets of `shown` not among them removed: the
    label sets shown now."""
    for key, value in values.items():
        gauge.labels(*key).set(value)
    for key in shown - values.keys():
        gauge.remove(*key)
    return set(values)
