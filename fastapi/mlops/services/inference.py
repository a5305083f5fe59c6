"""Predictions through Ray Serve's HTTP proxy, with retries inside an SLA."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx

from mlops.schemas import InferenceResponse
from mlops.services.serving import endpoint
from mlops.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class InferenceError(Exception):
    status: int
    detail: str


async def predict(
    *,
    http: httpx.AsyncClient,
    settings: Settings,
    row: list[float],
    version: str | None,
    retries: int,
    sla_seconds: float,
) -> InferenceResponse:
    """One row through the Serve application.

    Answers the replica's own verdicts at once (unknown version 404, bad input 422, no
    model 503); retries what may pass (connection errors, 5xx, Serve redeploying) with
    exponential backoff, never past the SLA (then 504).
    """
    deadline = time.monotonic() + sla_seconds
    url = endpoint(settings)
    headers = {"serve_multiplexed_model_id": version} if version else {}
    payload = {"rows": [row], "version": version}
    failure = "no attempt was made"
    for attempt in range(retries + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            response = await http.post(url, json=payload, headers=headers, timeout=remaining)
        except httpx.TimeoutException:
            failure = "Serve did not answer in time"
            break
        except httpx.TransportError as exc:
            failure = f"Ray Serve is not reachable at {url} ({type(exc).__name__})"
        else:
            if response.status_code == 200:
                return _reply(response.json())
            verdict = _verdict(response)
            if verdict is not None:
                raise verdict
            failure = f"Serve answered {response.status_code}: {response.text[:200]}"
        log.warning("inference attempt %d of %d failed: %s", attempt + 1, retries + 1, failure)
        backoff = min(0.05 * 2**attempt, 1.0)
        if time.monotonic() + backoff >= deadline:
            break
        await asyncio.sleep(backoff)
    if time.monotonic() >= deadline or failure == "Serve did not answer in time":
        raise InferenceError(504, f"no prediction within sla_seconds={sla_seconds:g}: {failure}")
    raise InferenceError(
        503,
        f"{failure}. Serving may be down: start it with `python fastapi/serve.py` "
        "(or let the API do it with MLOPS_AUTO_SERVE=true) and check /ready.",
    )


def _verdict(response: httpx.Response) -> InferenceError | None:
    """The replica's answer about the request itself, which retrying cannot change."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    status = {"unknown_version": 404, "bad_input": 422, "no_model": 503, "load_failed": 503}.get(
        code or ""
    )
    return InferenceError(status, body["detail"]) if status else None


def _reply(body: dict) -> InferenceResponse:
    probabilities = body["probabilities"][0]
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    return InferenceResponse(
        prediction=best,
        label=body["classes"][best],
        # The compiled model computes in float32: six decimals is what it knows.
        probabilities={c: round(p, 6) for c, p in zip(body["classes"], probabilities, strict=True)},
        model_version=body["version"],
        predictor=body["predictor"],
    )
