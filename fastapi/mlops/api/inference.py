"""Predictions from the registered model, served by Ray Serve."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from mlops.api.deps import ServicesDep
from mlops.schemas import ErrorResponse, InferenceRequest, InferenceResponse
from mlops.services.container import Services
from mlops.services.inference import InferenceError, predict

router = APIRouter(tags=["inference"])


@router.post(
    "/inference",
    responses={
        404: {"model": ErrorResponse, "description": "No such model version."},
        503: {"model": ErrorResponse, "description": "No model yet, or serving is down."},
        504: {"model": ErrorResponse, "description": "No answer within sla_seconds."},
    },
)
async def inference(request: InferenceRequest, services: ServicesDep) -> InferenceResponse:
    """Predict one row with the champion, or with `model_version` when given."""
    try:
        return await predict(
            batcher=services.batcher,
            row=request.input_data,
            version=request.model_version,
            retries=3 if request.retries is None else request.retries,
            sla_seconds=60 if request.sla_seconds is None else request.sla_seconds,
        )
    except InferenceError as exc:
        detail = exc.detail
        if exc.serving_down:
            detail = f"{detail}. {_serving_hint(services)}"
        raise HTTPException(exc.status, detail) from None


def _serving_hint(services: Services) -> str:
    """What to do when Serve is down; with auto-serve, also start deploying now."""
    if services.settings.auto_serve:
        services.serving_wanted.set()
        return (
            "Serving is being started: the API deploys it once a champion model exists. "
            "Retry in a few seconds; /ready and the Ray dashboard show progress."
        )
    return "Serving is down: start it with `python fastapi/serve.py` and check /ready."
