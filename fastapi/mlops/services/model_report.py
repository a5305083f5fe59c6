"""What /get_metrics reports: the latest version and the last week's accuracy."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from statistics import fmean

from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.schemas import LatestModel, MetricsResponse, RunPoint
from mlops.settings.api import ApiSettings


class ModelReport:
    def __init__(self, *, settings: ApiSettings, registry: MlflowRegistry) -> None:
        self._settings = settings
        self._registry = registry

    async def report(self, now: datetime) -> MetricsResponse:
        settings, registry = self._settings, self._registry
        latest = await registry.latest_version(settings.model_name)
        champion = await registry.alias_version(settings.model_name, settings.champion_alias)
        latest_model = None
        if latest is not None:
            accuracy = await registry.run_accuracy(latest.run_id) if latest.run_id else None
            latest_model = LatestModel(
                version=latest.version,
                accuracy=accuracy,
                trained_at=latest.created_at,
                is_champion=latest.version == champion,
                run_id=latest.run_id,
            )
        runs = await registry.runs_since(settings.experiment_name, now - timedelta(days=7))
        by_day: dict[str, list[float]] = defaultdict(list)
        for run in runs:
            by_day[run.started_at.date().isoformat()].append(run.accuracy)
        return MetricsResponse(
            latest_model=latest_model,
            champion_version=champion,
            weekly_average=fmean(run.accuracy for run in runs) if runs else None,
            avg_accuracy_last_7_days={day: fmean(values) for day, values in sorted(by_day.items())},
            runs=[
                RunPoint(run_id=r.run_id, started_at=r.started_at, accuracy=r.accuracy)
                for r in runs
            ],
        )
