"""Predictions through Ray Serve, with retries inside an SLA."""

from __future__ import annotations

import asyncio
import logging
import time

from mlops.contracts.model_definition import ModelDefinition
from mlops.contracts.predictions import Arm, new_prediction_id, shadow_id
from mlops.contracts.rollouts import Rollout
from mlops.contracts.serve import ServeAnswer, ServedModel, ServeErrorCode, prediction_of
from mlops.retry import retried
from mlops.schemas import InferenceResponse
from mlops.services.batching import Recorded, ServeBatcher, ServeVerdict, TransientServeError
from mlops.services.rollout_routing import RolloutRouter
from mlops.services.serve_deployment import SERVING_RETRY_AFTER_S, Outage, Serving
from mlops.telemetry import Instruments

log = logging.getLogger(__name__)

# A challenger answers within this or not at all (the champion answers a canary's
# request then); shadow copies beyond MAX_SHADOWS_IN_FLIGHT are skipped, and counted.
CHALLENGER_SLA_SECONDS = 5.0
MAX_SHADOWS_IN_FLIGHT = 1024
SHADOW_DELAY_S = 0.1
# A shadow's copy of a request: the row, its model, the challenger, the champion's id.
ShadowCopy = tuple[list[float], ModelDefinition, str, str]


class InferenceFailed(Exception):
    """No prediction; `status` is the HTTP status that says why, and `retry_after_s`,
    when set, how soon asking again may succeed."""

    status = 500
    retry_after_s: int | None = None

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

    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class SlaExceeded(InferenceFailed):
    status = 504


class Inference:
    def __init__(
        self,
        *,
        batcher: ServeBatcher,
        serving: Serving,
        instruments: Instruments,
        record: bool,
        router: RolloutRouter,
    ) -> None:
        self._batcher = batcher
        self._serving = serving
        self._instruments = instruments
        self._record = record  # each answer gets an id, and its replica records it
        self._router = router
        self._shadows: set[asyncio.Task[None]] = set()
        self._shadow_rows: list[ShadowCopy] = []
        self._shadow_timer: asyncio.TimerHandle | None = None
        self._shadows_in_flight = 0

    async def predict(
        self,
        row: list[float],
        *,
        model: ModelDefinition,
        version: str | None,
        retries: int,
        sla_seconds: float,
        routing_key: str | None = None,
    ) -> InferenceResponse:
        """One row through the Serve application, by the model's champion or `version`
        (or, during a canary, the challenger: see services/rollout_routing.py).

        The replica's own verdicts are answered at once; what may pass (connection
        errors, 5xx, Serve redeploying) is retried with backoff, never past the SLA
        (then SlaExceeded). Serving found down also wakes auto-serve.
        """
        started = time.perf_counter()
        rollout = None if version else self._router.current(model.name)
        prediction_id = new_prediction_id() if self._record else None
        body = None
        if rollout is not None and self._router.canary_takes(rollout, routing_key):
            as_canary = self._recorded(model, prediction_id, Arm.CANARY)
            body = await self._canary(row, model, rollout, sla_seconds, as_canary)
        if body is None:
            arm = Arm.PINNED if version else Arm.CHAMPION
            recorded = self._recorded(model, prediction_id, arm)
            body = await self._answer(row, model, version, retries, sla_seconds, recorded)
        reply = _reply(model.name, body, *prediction_of(body))
        if prediction_id is not None:
            reply.prediction_id = prediction_id
            if rollout is not None and self._router.shadow_takes(rollout):
                self._shadow(row, model, rollout.version, prediction_id)
        self._instruments.inferences.labels(model.name, reply.model_version, "200").inc()
        self._instruments.inference_latency.labels(model.name, reply.model_version).observe(
            time.perf_counter() - started
        )
        return reply

    @staticmethod
    def _recorded(model: ModelDefinition, prediction_id: str | None, arm: Arm) -> Recorded | None:
        return None if prediction_id is None else Recorded(model.name, prediction_id, arm)

    async def _answer(
        self,
        row: list[float],
        model: ModelDefinition,
        version: str | None,
        retries: int,
        sla_seconds: float,
        recorded: Recorded | None,
    ) -> ServeAnswer:
        try:
            served = ServedModel(model.registered_model, version)
            return await self._predict(row, served, retries, sla_seconds, recorded)
        except InferenceFailed as exc:
            # Failures carry no version label: a client-chosen string must not become one.
            self._instruments.inferences.labels(model.name, "none", str(exc.status)).inc()
            if isinstance(exc, ServingDown):
                raise await self._serving_down(exc, model, version) from None
            # The replica knows the registered model; people know the model's name.
            if isinstance(exc, Rejected) and exc.code is ServeErrorCode.NO_MODEL:
                raise Rejected(exc.status, _untrained(model.name), exc.code) from None
            if isinstance(exc, Rejected) and exc.code is ServeErrorCode.UNKNOWN_VERSION:
                detail = f"{model.name} has no version {version!r}"
                raise Rejected(exc.status, detail, exc.code) from None
            raise

    async def _serving_down(
        self, exc: ServingDown, model: ModelDefinition, version: str | None
    ) -> InferenceFailed:
        """What to answer when serving is down: ask again soon while the API starts it;
        train first when the model has no champion, which nothing would serve."""
        outage = await self._serving.outage(model.registered_model, version)
        if outage is Outage.UNTRAINED:
            return Rejected(503, _untrained(model.name), ServeErrorCode.NO_MODEL)
        detail = f"{exc.detail.rstrip('.')}. {self._serving.hint}"
        return ServingDown(detail, SERVING_RETRY_AFTER_S if outage is Outage.STARTING else None)

    async def _canary(
        self,
        row: list[float],
        model: ModelDefinition,
        rollout: Rollout,
        sla_seconds: float,
        recorded: Recorded | None,
    ) -> ServeAnswer | None:
        """The challenger's answer; None when it has none (the champion answers then)."""
        served = ServedModel(model.registered_model, rollout.version)
        sla = min(sla_seconds, CHALLENGER_SLA_SECONDS)
        try:
            return await self._predict(row, served, 0, sla, recorded)
        except InferenceFailed as exc:
            self._instruments.challenger_failures.labels(model.name, rollout.mode).inc()
            log.warning(
                "challenger %s/%s failed, champion answers: %s",
                model.name,
                rollout.version,
                exc.detail,
            )
            return None

    def _shadow(self, row: list[float], model: ModelDefinition, version: str, of: str) -> None:
        """The challenger's answer to the same row, recorded beside the champion's
        prediction `of`, after the caller has had the champion's. Copies are sent
        together every SHADOW_DELAY_S, so the batcher packs them into few Serve calls."""
        if len(self._shadow_rows) + self._shadows_in_flight >= MAX_SHADOWS_IN_FLIGHT:
            self._instruments.challenger_failures.labels(model.name, "shadow-skipped").inc()
            return
        self._shadow_rows.append((row, model, version, of))
        if self._shadow_timer is None:
            loop = asyncio.get_running_loop()
            self._shadow_timer = loop.call_later(SHADOW_DELAY_S, self._send_shadows)

    def _send_shadows(self) -> None:
        copies, self._shadow_rows, self._shadow_timer = self._shadow_rows, [], None
        self._shadows_in_flight += len(copies)
        task = asyncio.create_task(self._shadow_answers(copies))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow_answers(self, copies: list[ShadowCopy]) -> None:
        try:
            await asyncio.gather(*(self._shadow_answer(*copy) for copy in copies))
        finally:
            self._shadows_in_flight -= len(copies)

    async def _shadow_answer(
        self, row: list[float], model: ModelDefinition, version: str, of: str
    ) -> None:
        served = ServedModel(model.registered_model, version)
        recorded = Recorded(model.name, shadow_id(of), Arm.SHADOW)
        try:
            await self._predict(row, served, 0, CHALLENGER_SLA_SECONDS, recorded)
        except InferenceFailed:
            self._instruments.challenger_failures.labels(model.name, "shadow").inc()

    async def _predict(
        self,
        row: list[float],
        served: ServedModel,
        retries: int,
        sla_seconds: float,
        recorded: Recorded | None = None,
    ) -> ServeAnswer:
        """Serve's answer; the replica records it as `recorded` says. A row past its
        SLA may still be answered, and so recorded, though its caller has given up: a
        record no label can name (the caller got no id)."""
        deadline = time.monotonic() + sla_seconds

        async def attempt() -> ServeAnswer:
            async with asyncio.timeout(remaining()):
                return await self._batcher.predict(row, served, recorded)

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


def _reply(
    model: str, body: ServeAnswer, output: int | float, probabilities: list[float] | None
) -> InferenceResponse:
    if probabilities is None:  # a regressor's value
        return InferenceResponse(
            prediction=output,
            model=model,
            model_version=body["version"],
            predictor=body["predictor"],
        )
    classes = body["classes"]
    return InferenceResponse(
        prediction=output,
        label=classes[int(output)],
        probabilities=dict(zip(classes, probabilities, strict=True)),
        model=model,
        model_version=body["version"],
        predictor=body["predictor"],
    )
