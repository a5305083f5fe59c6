"""Predictions from the models' versions, served by Ray Serve."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from mlops.api.deps import BODY_RESPONSES, UNAUTHORIZED, CatalogDep, InferenceDep
from mlops.schemas import ErrorResponse, InferenceRequest, InferenceResponse
from mlops.services.inference import InferenceFailed

# A prediction reads the model: open like the other reads unless configured.
router = APIRouter(tags=["inference"], responses=UNAUTHORIZED)


@router.post(
    "/inference",
    responses={
        **BODY_RESPONSES,
        404: {"model": ErrorResponse, "description": "No such model, or version."},
        409: {
            "model": ErrorResponse,
            "description": "The version (or the champion) was not registered by the platform, "
            "or changed since: it is never loaded.",
        },
        503: {
            "model": ErrorResponse,
            "description": "No champion yet, or serving is down. While the API is starting "
            "serving itself, the answer carries Retry-After.",
        },
        504: {"model": ErrorResponse, "description": "No answer within sla_seconds."},
    },
    response_model_exclude_none=True,  # a regression answer has no label or probabilities
)
async def inference(
    request: InferenceRequest, inference: InferenceDep, catalog: CatalogDep
) -> InferenceResponse:
    """Predict one row with the model's champion (default: the default model), or with
    `model_version` when given."""
    model = await catalog.get(request.model)
    try:
        return await inference.predict(
            request.input_data,
            model=model,
            version=request.model_version,
            retries=3 if request.retries is None else request.retries,
            sla_seconds=60 if request.sla_seconds is None else request.sla_seconds,
            routing_key=request.routing_key,
        )
    except InferenceFailed as exc:
        if exc.status == 422:  # the row does not fit the model: shaped like any 422
            problem = {"loc": ["body", "input_data"], "msg": exc.detail, "type": "value_error"}
            raise HTTPException(422, [problem]) from None
        retry = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        raise HTTPException(exc.status, exc.detail, headers=retry) from None
