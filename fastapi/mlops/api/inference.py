"""Predictions from the registered model, served by Ray Serve."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException
from mlops.api.deps import BODY_RESPONSES, UNAUTHORIZED, ServicesDep
from mlops.schemas import ErrorResponse, InferenceRequest, InferenceResponse
from mlops.services.container import Services
from mlops.services.inference import InferenceError, predict

# A prediction reads the model: open like the other reads unless configured.
router = APIRouter(tags=["inference"], responses=UNAUTHORIZED)


@router.post(
    "/inference",
    responses={
        **BODY_RESPONSES,
        404: {"model": ErrorResponse, "description": "No such model version."},
        503: {"model": ErrorResponse, "description": "No model yet, or serving is down."},
        504: {"model": ErrorResponse, "description": "No answer within sla_seconds."},
    },
)
async def inference(request: InferenceRequest, services: ServicesDep) -> InferenceResponse:
    """Predict one row with the champion, or with `model_version` when given."""
    metrics = services.metrics
    started = time.perf_counter()
    try:
        reply = await predict(
            batcher=services.batcher,
            row=request.input_data,
            version=request.model_version,
            retries=3 if request.retries is None else request.retries,
            sla_seconds=60 if request.sla_seconds is None else request.sla_seconds,
        )
    except InferenceError as exc:
        # Failures carry no version label: a client-chosen string must not become one.
        metrics.inferences.labels("none", str(exc.status)).inc()
        if exc.status == 422:  # the row does not fit the model: shaped like any 422
            problem = {"loc": ["body", "input_data"], "msg": exc.detail, "type": "value_error"}
            raise HTTPException(422, [problem]) from None
        detail = exc.detail
        if exc.serving_down:
            detail = f"{detail.rstrip('.')}. {_serving_hint(services)}"
        raise HTTPException(exc.status, detail) from None
    metrics.inferences.labels(reply.model_version, "200").inc()
    metrics.inference_latency.labels(reply.model_version).observe(time.perf_counter() - started)
    return reply


def _serving_hint(services: Services) -> str:
    """What to do when Serve is down; with auto-serve, also start deploying now."""
    if services.settings.auto_serve:
        services.serving_wanted.set()
        return (
            "Serving is being started: the API deploys it once a champion model exists. "
            "Retry in a few seconds; /ready and the Ray dashboard show progress."
        )
    return "Serving is down: start it with `python fastapi/serve.py` and check /ready."
