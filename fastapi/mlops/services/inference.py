"""Predictions through Ray Serve, with retries inside an SLA."""

from __future__ import annotations

import asyncio
import time

from mlops.contracts.model_definition import ModelDefinition, Task
from mlops.contracts.serve import (
    PROBABILITY_DECIMALS,
    ServeAnswer,
    ServedModel,
    ServeErrorCode,
    top_class,
)
from mlops.retry import retried
from mlops.schemas import InferenceResponse
from mlops.services.batching import ServeBatcher, ServeVerdict, TransientServeError
from mlops.services.serve_deployment import Serving
from mlops.telemetry import Instruments


class InferenceFailed(Exception):
    """No prediction; `status` is the HTTP status that says why."""

    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Rejected(InferenceFailed):
    """The replica judged the request itself: unknown version (404), a row that does not
    fit the model (422), no model yet (503)."""

    def __init__(self, status: int, detail: str, code: ServeErrorCode) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code


class ServingDown(InferenceFailed):
    status = 503


class SlaExceeded(InferenceFailed):
    status = 504


class Inference:
    def __init__(
        self, *, batcher: ServeBatcher, serving: Serving, instruments: Instruments
    ) -> None:
        self._batcher = batcher
        self._serving = serving
        self._instruments = instruments

    async def predict(
        self,
        row: list[float],
        *,
        model: ModelDefinition,
        version: str | None,
        retries: int,
        sla_seconds: float,
    ) -> InferenceResponse:
        """One row through the Serve application, by the model's champion or `version`.

        The replica's own verdicts are answered at once; what may pass (connection
        errors, 5xx, Serve redeploying) is retried with backoff, never past the SLA
        (then SlaExceeded). Serving found down also wakes auto-serve.
        """
        started = time.perf_counter()
        try:
            served = ServedModel(model.registered_model, version)
            body = await self._predict(row, served, retries, sla_seconds)
        except InferenceFailed as exc:
            # Failures carry no version label: a client-chosen string must not become one.
            self._instruments.inferences.labels(model.name, "none", str(exc.status)).inc()
            if isinstance(exc, ServingDown):
                self._serving.check_now()
                raise ServingDown(f"{exc.detail.rstrip('.')}. {self._serving.hint}") from None
            if isinstance(exc, Rejected) and exc.code is ServeErrorCode.NO_MODEL:
                # The replica knows the registered model; people know the model's name.
                raise Rejected(exc.status, _untrained(model.name), exc.code) from None
            raise
        reply = _reply(model.name, body)
        self._instruments.inferences.labels(model.name, reply.model_version, "200").inc()
        self._instruments.inference_latency.labels(model.name, reply.model_version).observe(
            time.perf_counter() - started
        )
        return reply

    async def _predict(
        self, row: list[float], served: ServedModel, retries: int, sla_seconds: float
    ) -> ServeAnswer:
        deadline = time.monotonic() + sla_seconds

        async def attempt() -> ServeAnswer:
            async with asyncio.timeout(remaining()):
                return await self._batcher.predict(row, served)

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        try:
            return await retried(
                attempt,
                on=(TransientServeError,),
                first=0.05,
                cap=1.0,
                attempts=retries + 1,
                within=sla_seconds,
                what="inference",
            )
        except ServeVerdict as verdict:
            raise Rejected(verdict.status, verdict.detail, verdict.code) from None
        except TimeoutError:
            raise SlaExceeded(
                f"no prediction within sla_seconds={sla_seconds:g}: Serve did not answer in time"
            ) from None
        except TransientServeError as exc:
            if remaining() <= 0:
                raise SlaExceeded(
                    f"no prediction within sla_seconds={sla_seconds:g}: {exc}"
                ) from None
            raise ServingDown(str(exc)) from None


def _untrained(name: str) -> str:
    return (
        f"{name} has no champion yet: train it (mlops train -m {name}, or POST "
        f'/trigger_training with "model": "{name}")'
    )


def _reply(model: str, body: ServeAnswer) -> InferenceResponse:
    outputs = body["outputs"]
    if body["task"] == Task.REGRESSION:
        return InferenceResponse(
            prediction=outputs[0],
            model=model,
            model_version=body["version"],
            predictor=body["predictor"],
        )
    best = top_class(outputs)
    classes = body["classes"]
    return InferenceResponse(
        prediction=best,
        label=classes[best],
        probabilities={
            c: round(p, PROBABILITY_DECIMALS) for c, p in zip(classes, outputs, strict=True)
        },
        model=model,
        model_version=body["version"],
        predictor=body["predictor"],
    )
