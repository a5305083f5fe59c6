"""True outcomes sent back for recorded predictions, and the live metrics they give.

A label is checked against the prediction it is for (a class of that version, or a
number for regression), then joined to it; a prediction labelled twice counts once, with
the last label. Live metrics are computed per version from the joined labels of a
window (the last hour, day or week, or the last N).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass

from mlops.clients.redis.predictions import Joined, Label, PredictionStore
from mlops.contracts.model_definition import Metric, ModelDefinition, Task
from mlops.contracts.predictions import (
    HOUR_MS,
    LabelledPrediction,
    PredictionRecord,
    prediction_ms,
    shadow_id,
)
from mlops.feedback_schemas import Outcome, Window
from mlops.live_metrics import Estimate, metrics

LabelValue = int | float | str
# How long after an answer its label waits for the answer to be recorded.
RECORDING_GRACE_MS = 2000
_UNKNOWN = (
    "no prediction with this id: never recorded, or pushed out by newer ones "
    "(MLOPS_PREDICTION_HISTORY per model)"
)
_PUSHED_OUT = "pushed out by newer predictions (MLOPS_PREDICTION_HISTORY per model)"


@dataclass(frozen=True)
class ItemResult:
    prediction_id: str
    outcome: Outcome
    detail: str | None = None
    model: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class VersionLive:
    version: str
    labels: int
    metrics: dict[Metric, Estimate]


class Feedback:
    def __init__(self, store: PredictionStore, *, max_age_hours: float) -> None:
        self._store = store
        self._max_age_ms = int(max_age_hours * HOUR_MS)

    async def send(self, items: list[tuple[str, LabelValue]]) -> list[ItemResult]:
        """Each (prediction id, label) judged and, when it fits, joined; in order."""
        ids = list(dict.fromkeys(prediction_id for prediction_id, _ in items))
        found = await self._find(ids)
        results: list[ItemResult | None] = []
        by_model: dict[str, list[tuple[int, Label]]] = defaultdict(list)
        for position, (prediction_id, value) in enumerate(items):
            if prediction_id not in found:
                results.append(self._missing(prediction_id))
                continue
            record = found[prediction_id]
            if record is None:
                results.append(ItemResult(prediction_id, Outcome.EXPIRED, _PUSHED_OUT))
                continue
            label, problem = _checked(record, value)
            if label is None:
                results.append(
                    ItemResult(
                        prediction_id, Outcome.WRONG_LABEL, problem, record.model, record.version
                    )
                )
                continue
            results.append(None)
            by_model[record.model].append((position, Label(record, label)))
        twins = await self._shadow_twins(by_model)
        for model, labels in by_model.items():
            joined = await self._store.join(model, [label for _, label in labels] + twins[model])
            for (position, sent), outcome in zip(labels, joined, strict=False):
                results[position] = _result(sent.prediction, outcome)
        return [r for r in results if r is not None]

    async def _find(self, ids: list[str]) -> dict[str, PredictionRecord | None]:
        """The predictions, waiting a little for those made in the last
        RECORDING_GRACE_MS: an answer is recorded just after it is sent, so a label may
        come first. Never longer than that in all (an id from the future is not waited
        for: none was made there)."""
        found = await self._store.find(ids)
        deadline = time.monotonic() + RECORDING_GRACE_MS / 1000
        pause = 0.05

        def missing() -> list[str]:
            return [i for i in ids if i not in found and 0 <= _age_ms(i) < RECORDING_GRACE_MS]

        while (waiting := missing()) and time.monotonic() + pause < deadline:
            await asyncio.sleep(pause)
            found |= await self._store.find(waiting)
            pause *= 2
        return found

    async def _shadow_twins(
        self, by_model: dict[str, list[tuple[int, Label]]]
    ) -> dict[str, list[Label]]:
        """Labels for the shadow answers of the labelled predictions (a shadow rollout's
        challenger answered the same rows): joined with theirs, not reported apart."""
        labels = {
            shadow_id(label.prediction.prediction_id): label
            for labels in by_model.values()
            for _, label in labels
        }
        found = await self._store.find(list(labels))
        twins: dict[str, list[Label]] = defaultdict(list)
        for twin_id, twin in found.items():
            sent = labels[twin_id].label
            if twin is not None and _checked(twin, sent)[0] is not None:
                twins[twin.model].append(Label(twin, sent))
        return twins

    def _missing(self, prediction_id: str) -> ItemResult:
        if _age_ms(prediction_id) > self._max_age_ms:
            detail = f"older than MLOPS_PREDICTION_MAX_AGE_HOURS ({self._max_age_ms / 36e5:g} h)"
            return ItemResult(prediction_id, Outcome.EXPIRED, detail)
        return ItemResult(prediction_id, Outcome.UNKNOWN, _UNKNOWN)

    async def recent(self, model: str, limit: int) -> list[PredictionRecord]:
        return await self._store.recent(model, limit)

    async def live(
        self, model: ModelDefinition, *, window: Window | None, last: int | None
    ) -> list[VersionLive]:
        """Per version (newest first), its metrics on the window's labels."""
        if last is not None:
            labelled = await self._store.labelled_last(model.name, last)
        else:
            span = (window or Window.HOUR).milliseconds
            labelled = await self._store.labelled_since(model.name, _now_ms() - span)
        by_version: dict[str, list[LabelledPrediction]] = defaultdict(list)
        for item in labelled:
            by_version[item.version].append(item)
        ordered = sorted(by_version.items(), key=lambda kv: int(kv[0]), reverse=True)
        task = model.spec.task
        # Bootstraps over up to MLOPS_LABEL_HISTORY labels: off the event loop, which
        # answers predictions meanwhile.
        return await asyncio.to_thread(
            lambda: [_version_live(task, version, items) for version, items in ordered]
        )


def estimates(task: Task, items: list[LabelledPrediction]) -> dict[Metric, Estimate]:
    """The task's metrics on these labelled predictions (none without any)."""
    if not items:
        return {}
    return metrics(task, [item.label for item in items], [item.output for item in items])


def _version_live(task: Task, version: str, items: list[LabelledPrediction]) -> VersionLive:
    return VersionLive(version, len(items), estimates(task, items))


def _checked(record: PredictionRecord, value: LabelValue) -> tuple[int | float | None, str]:
    """The label as stored (a class index, or a value), or why it does not fit."""
    if isinstance(value, bool):
        return None, "a label is a class name or index, or a number; not true or false"
    if record.task is Task.REGRESSION:
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value), ""
        return None, f"model {record.model} is a regression: its label is a finite number"
    classes = record.classes
    if isinstance(value, str) and value in classes:
        return classes.index(value), ""
    if isinstance(value, int) and 0 <= value < len(classes):
        return value, ""
    listed = ", ".join(classes)
    return None, (
        f"not a class of model {record.model} version {record.version}: give one of "
        f"{listed}, or its index 0..{len(classes) - 1}"
    )


def _result(record: PredictionRecord, joined: Joined) -> ItemResult:
    outcome = {
        Joined.ACCEPTED: Outcome.ACCEPTED,
        Joined.REPLACED: Outcome.REPLACED,
        Joined.EXPIRED: Outcome.EXPIRED,
    }[joined]
    detail = (
        "replaces the label sent before for this prediction" if joined is Joined.REPLACED else None
    )
    return ItemResult(record.prediction_id, outcome, detail, record.model, record.version)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _age_ms(prediction_id: str) -> int:
    return _now_ms() - prediction_ms(prediction_id)
