"""Recorded predictions, the true outcomes sent back for them, and the live metrics
those give per model version."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from mlops.api.deps import (
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    WRITE_RESPONSES,
    CatalogDep,
    FeedbackDep,
    ModelsDep,
    Writer,
)
from mlops.contracts.model_definition import MODEL_NAME_PATTERN
from mlops.contracts.predictions import PredictionRecord
from mlops.feedback_schemas import (
    FeedbackItemResult,
    FeedbackRequest,
    FeedbackResponse,
    PerformanceReport,
    PredictionInfo,
    PredictionList,
    VersionPerformance,
    live_estimates,
)
from mlops.schemas import ErrorResponse
from mlops.services.feedback import ItemResult, Outcome, VersionLive, Window

router = APIRouter(tags=["feedback"], responses=UNAUTHORIZED)
Name = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="A model's name.")]
_REDIS_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "Redis is unreachable."}
}
# A single label that is not taken: its status, as the batch's outcome says it.
_REFUSED = {Outcome.UNKNOWN: 404, Outcome.EXPIRED: 410, Outcome.WRONG_LABEL: 422}


@router.post(
    "/feedback",
    dependencies=[Writer],
    responses={
        **WRITE_RESPONSES,
        **_REDIS_DOWN,
        404: {"model": ErrorResponse, "description": "A single label: no such prediction."},
        410: {"model": ErrorResponse, "description": "A single label: the prediction expired."},
        422: {"description": "A single label that is not one of the model's (or a bad body)."},
    },
)
async def feedback(request: FeedbackRequest, service: FeedbackDep) -> FeedbackResponse:
    """The true outcome of recorded predictions: one, or up to 1,000 as `items`. Each is
    answered accepted, replaced (the last label sent counts), unknown, expired or
    wrong_label; a single one that is not taken is answered with its status."""
    results = await service.send(request.pairs())
    if request.items is None and (status := _REFUSED.get(results[0].outcome)):
        detail = results[0].detail or results[0].outcome.value
        if status == 422:
            problem = {"loc": ["body", "label"], "msg": detail, "type": "value_error"}
            raise HTTPException(422, [problem])
        raise HTTPException(status, f"prediction {results[0].prediction_id}: {detail}")
    return FeedbackResponse(
        counts=dict(Counter(r.outcome for r in results)), items=[_item(r) for r in results]
    )


@router.get("/models/{name}/predictions", responses={**UNKNOWN_MODEL, **_REDIS_DOWN})
async def predictions(
    name: Name,
    catalog: CatalogDep,
    service: FeedbackDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PredictionList:
    """The model's recorded predictions, newest first (for debugging and export)."""
    model = await catalog.get(name)
    recorded = await service.recent(model.name, limit)
    return PredictionList(model=model.name, predictions=[_prediction(p) for p in recorded])


@router.get(
    "/models/{name}/performance",
    responses={**UNKNOWN_MODEL, 503: {"model": ErrorResponse, "description": "Redis or MLflow."}},
)
async def performance(
    name: Name,
    catalog: CatalogDep,
    service: FeedbackDep,
    models: ModelsDep,
    window: Window = Window.HOUR,
    last: Annotated[int | None, Query(ge=1, le=100_000, description="Instead of window.")] = None,
) -> PerformanceReport:
    """Each version's live metrics on the labels of the window (or the newest `last`),
    with 95 % intervals, beside its offline score on the gate's metric."""
    model = await catalog.get(name)
    live, listed = await asyncio.gather(
        service.live(model, window=None if last else window, last=last), models.versions(model)
    )
    gate = model.spec.gate
    offline = {v.version: v.scores.get(gate.metric.value) for v in listed.versions}
    return PerformanceReport(
        model=model.name,
        metric=gate.metric,
        threshold=gate.threshold,
        window=None if last else window,
        last=last,
        versions=[_version(v, offline.get(v.version), listed.champion_version) for v in live],
    )


def _item(result: ItemResult) -> FeedbackItemResult:
    return FeedbackItemResult(
        prediction_id=result.prediction_id,
        outcome=result.outcome,
        detail=result.detail,
        model=result.model,
        model_version=result.version,
    )


def _prediction(record: PredictionRecord) -> PredictionInfo:
    classes = record.classes
    return PredictionInfo(
        prediction_id=record.prediction_id,
        model_version=record.version,
        arm=record.arm,
        input_data=record.features,
        prediction=record.output,
        label=classes[int(record.output)] if classes else None,
        probabilities=dict(zip(classes, record.probabilities, strict=True))
        if classes and record.probabilities
        else None,
        predicted_at=datetime.fromtimestamp(record.predicted_at_ms / 1000, UTC),
    )


def _version(live: VersionLive, offline: float | None, champion: str | None) -> VersionPerformance:
    return VersionPerformance(
        version=live.version,
        is_champion=live.version == champion,
        labels=live.labels,
        live=live_estimates(live.metrics),
        offline=offline,
    )
