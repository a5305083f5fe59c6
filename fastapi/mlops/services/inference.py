"""Predictions through Ray Serve, with retries inside an SLA."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from mlops.schemas import InferenceResponse
from mlops.services.batching import ServeBatcher, ServeVerdict, TransientServeError

log = logging.getLogger(__name__)


@dataclass
class InferenceError(Exception):
    status: int
    detail: str
    serving_down: bool = False  # Serve could not be reached or has no application


async def predict(
    *,
    batcher: ServeBatcher,
    row: list[float],
    version: str | None,
    retries: int,
    sla_seconds: float,
) -> InferenceResponse:
    """One row through the Serve application.

    The replica's own verdicts are answered at once (unknown version 404, bad input
    422, no model 503); what may pass (connection errors, 5xx, Serve redeploying) is
    retried with exponential backoff, never past the SLA (then 504).
    """
    deadline = time.monotonic() + sla_seconds
    failure = "no attempt was made"
    for attempt in range(retries + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                body = await batcher.predict(row, version)
        except ServeVerdict as verdict:
            raise InferenceError(verdict.status, verdict.detail) from None
        except TimeoutError:
            failure = "Serve did not answer in time"
            break
        except TransientServeError as exc:
            failure = str(exc)
        else:
            return _reply(body)
        log.warning("inference attempt %d of %d failed: %s", attempt + 1, retries + 1, failure)
        backoff = min(0.05 * 2**attempt, 1.0)
        if time.monotonic() + backoff >= deadline:
            break
        await asyncio.sleep(backoff)
    if time.monotonic() >= deadline or failure == "Serve did not answer in time":
        raise InferenceError(504, f"no prediction within sla_seconds={sla_seconds:g}: {failure}")
    raise InferenceError(503, failure, serving_down=True)


def _reply(body: dict[str, Any]) -> InferenceResponse:
    probabilities = body["probabilities"]
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    return InferenceResponse(
        prediction=best,
        label=body["classes"][best],
        # The compiled model computes in float32: six decimals is what it knows.
        probabilities={c: round(p, 6) for c, p in zip(body["classes"], probabilities, strict=True)},
        model_version=body["version"],
        predictor=body["predictor"],
    )
