"""GET /metrics: the API's instruments and the platform's training totals, for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from mlops.api.deps import UNAUTHORIZED, InstrumentsDep, TrainingDep

router = APIRouter(tags=["operations"], responses=UNAUTHORIZED)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def prometheus_metrics(instruments: InstrumentsDep, training: TrainingDep) -> Response:
    """Requests, inference, alerts, SSE clients and schedule runs of this process, and
    the platform's training job totals, in Prometheus' text format."""
    body = instruments.exposition(await training.totals())
    return Response(body, media_type=CONTENT_TYPE_LATEST)
