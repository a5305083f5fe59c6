"""Is the champion still seeing the kind of inputs it was trained on?

A check reads the rows the champion served recently (sampled by the Serve replicas)
and compares them, feature by feature, with the reference profile its training job
stored (mlops.ml.drift). Too few rows give no verdict rather than a false alarm.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlops.clients.mlflow_registry import MlflowRegistry
from mlops.clients.redis import AlertStream, DriftSamples
from mlops.contracts.alerts import AlertKind
from mlops.contracts.model_definition import ModelDefinition
from mlops.contracts.version_card import REFERENCE_DIR, REFERENCE_FILE
from mlops.ml import drift
from mlops.schemas import DriftReport, FeatureDriftInfo
from mlops.settings.api import ApiSettings

_PROFILES_KEPT = 8  # reference profiles kept in memory (a few hundred KB each at most)


class DriftMonitor:
    def __init__(
        self,
        *,
        settings: ApiSettings,
        registry: MlflowRegistry,
        samples: DriftSamples,
        alerts: AlertStream,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._samples = samples
        self._alerts = alerts
        self._references: dict[str, dict[str, Any] | None] = {}  # run id -> profile

    async def check(self, model: ModelDefinition, threshold: float | None = None) -> DriftReport:
        """The model's champion's recent inputs against its training profile."""
        settings, name = self._settings, model.registered_model
        threshold = threshold or settings.drift_threshold
        report: dict[str, Any] = {
            "model": model.name,
            "model_version": None,
            "sample_size": 0,
            "min_rows": settings.drift_min_rows,
            "threshold": threshold,
            "checked_at": datetime.now(UTC),
            "features": [],
        }
        version = await self._registry.alias_version(name, settings.champion_alias)
        if version is None:
            detail = f"nothing to compare until {model.name} has a champion"
            return DriftReport(**report, verdict="no champion", detail=detail)
        report["model_version"] = version
        reference = await self._reference(name, version)
        if reference is None:
            detail = f"version {version} has no reference profile (trained before drift checks)"
            return DriftReport(**report, verdict="no reference", detail=detail)
        rows = await self._samples.recent(name, version)
        width = len(reference["features"])
        rows = [row for row in rows if len(row) == width]
        report["sample_size"] = len(rows)
        if len(rows) < settings.drift_min_rows:
            detail = (
                f"{len(rows)} rows served by version {version} recently; a verdict needs "
                f"{settings.drift_min_rows}"
            )
            return DriftReport(**report, verdict="too little traffic", detail=detail)
        scores = await asyncio.to_thread(
            drift.compare,
            reference,
            np.asarray(rows),
            threshold=threshold,
            alpha=settings.drift_alpha,
        )
        report["features"] = [FeatureDriftInfo(**vars(score)) for score in scores]
        drifting = [score for score in scores if score.drifting]
        if not drifting:
            detail = f"no feature drifts over {len(rows)} rows"
            return DriftReport(**report, verdict="no drift", detail=detail)
        named = ", ".join(f"{s.feature}: PSI {s.psi:.2f}, KS p {s.ks_pvalue:.2g}" for s in drifting)
        return DriftReport(**report, verdict="drift", detail=f"Input drift on {named}")

    async def check_and_alert(
        self, model: ModelDefinition, threshold: float | None, *, schedule_id: str
    ) -> DriftReport:
        report = await self.check(model, threshold)
        if report.verdict == "drift":
            await self._alerts.publish(
                "warning",
                f"{report.detail} ({model.name} version {report.model_version}, "
                f"{report.sample_size} recent rows, PSI threshold {report.threshold:g})",
                kind=AlertKind.DRIFT,
                data={
                    "model": model.name,
                    "schedule_id": schedule_id,
                    "version": report.model_version,
                    "features": [f.feature for f in report.features if f.drifting],
                },
            )
        return report

    async def _reference(self, model_name: str, version: str) -> dict[str, Any] | None:
        """The version's training profile, fetched once and kept for the last few."""
        found = await self._registry.version(model_name, version)
        if found is None or found.run_id is None:
            return None
        if found.run_id not in self._references:
            path = f"{REFERENCE_DIR}/{REFERENCE_FILE}"
            profile = await self._registry.run_artifact_json(found.run_id, path)
            while len(self._references) >= _PROFILES_KEPT:
                self._references.pop(next(iter(self._references)))
            self._references[found.run_id] = profile
        return self._references[found.run_id]
