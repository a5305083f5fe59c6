"""What /get_metrics reports for a model: its latest version and the last week's runs,
scored on the model's gate metric (and accuracy, for classification)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from statistics import fmean

from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.contracts.model_definition import ModelDefinition
from mlops.schemas import LatestModel, MetricsResponse, RunPoint
from mlops.settings.api import ApiSettings


class ModelReport:
    def __init__(self, *, settings: ApiSettings, registry: MlflowRegistry) -> None:
        self._settings = settings
        self._registry = registry

    async def report(self, model: ModelDefinition, now: datetime) -> MetricsResponse:
        registry, name = self._registry, model.registered_model
        metric = model.spec.gate.metric
        latest = await registry.latest_version(name)
        champion = await registry.alias_version(name, self._settings.champion_alias)
        latest_model = None
        if latest is not None:
            scores = await registry.run_metrics(latest.run_id) if latest.run_id else {}
            latest_model = LatestModel(
                version=latest.version,
                accuracy=scores.get("accuracy"),
                score=scores.get(metric),
                trained_at=latest.created_at,
                is_champion=latest.version == champion,
                run_id=latest.run_id,
            )
        runs = await registry.runs_since(model.experiment, now - timedelta(days=7), metric)
        by_day: dict[str, list[float]] = defaultdict(list)
        for run in runs:
            by_day[run.started_at.date().isoformat()].append(run.scores[metric])
        daily = {day: fmean(values) for day, values in sorted(by_day.items())}
        return MetricsResponse(
            model=model.name,
            metric=metric,
            latest_model=latest_model,
            champion_version=champion,
            weekly_average=fmean(run.scores[metric] for run in runs) if runs else None,
            daily_average=daily,
            avg_accuracy_last_7_days=daily if metric == "accuracy" else {},
            runs=[
                RunPoint(
                    run_id=r.run_id,
                    started_at=r.started_at,
                    score=r.scores[metric],
                    accuracy=r.scores.get("accuracy"),
                )
                for r in runs
            ],
        )
