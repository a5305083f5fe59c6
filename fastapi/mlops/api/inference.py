"""Predictions from the registered model, served by Ray Serve."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from mlops.api.deps import ServicesDep
from mlops.schemas import ErrorResponse, InferenceRequest, InferenceResponse
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
        raise HTTPException(exc.status, exc.detail) from None
