"""What operators scrape and grep: Prometheus metrics and request ids (mlops.logs
formats the lines).

One ASGI middleware gives every request an id (the client's X-Request-ID when it is
sane, else a new one), returns it in the X-Request-ID header, puts it on every log line
written while the request runs, counts and times the request per route, and writes one
log line for it.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops.contracts.serve import RecordingCounts, Unrecorded
from mlops.logs import request_id

_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_UNRECORDED = frozenset(reason.value for reason in Unrecorded)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
log = logging.getLogger("mlops.request")


class Instruments:
    """The API's Prometheus instruments, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mlops_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "mlops_http_request_duration_seconds",
            "Time to answer an HTTP request (to the first byte for streams).",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inferences = Counter(
            "mlops_inference_requests",
            "Predictions asked for, by the model and version that answered, and status.",
            ["model", "model_version", "status"],
            registry=r,
        )
        self.inference_latency = Histogram(
            "mlops_inference_duration_seconds",
            "Time to a prediction, retries included, by model and version.",
            ["model", "model_version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Counted by the Serve replicas that record, and told to the API in their replies.
        self.recorded = Counter(
            "mlops_predictions_recorded",
            "Predictions recorded (for feedback and live metrics), by model.",
            ["model"],
            registry=r,
        )
        self.unrecorded = Counter(
            "mlops_predictions_unrecorded",
            "Predictions answered but not recorded, by reason: redis (unreachable) or "
            "backlog (more waiting than MLOPS_PREDICTION_BACKLOG).",
            ["reason"],
            registry=r,
        )
        self.challenger_failures = Counter(
            "mlops_challenger_failures",
            "A rollout's challenger without an answer, by model and mode: canary (the "
            "champion answered instead), shadow, shadow-skipped (too many in flight).",
            ["model", "mode"],
            registry=r,
        )
        self.live_metric = Gauge(
            "mlops_live_metric",
            "A version's metric on the last hour's labels (POST /feedback).",
            ["model", "model_version", "metric"],
            registry=r,
        )
        self.live_labels = Gauge(
            "mlops_live_labels",
            "Labelled predictions of a version in the last hour.",
            ["model", "model_version"],
            registry=r,
        )
        self.alerts = Counter(
            "mlops_alerts",
            "Alerts published on the stream, by level (seen by this API process).",
            ["level"],
            registry=r,
        )
        self.sse_clients = Gauge(
            "mlops_sse_clients", "Server-Sent Events clients connected now.", registry=r
        )
        self.schedule_runs = Counter(
            "mlops_schedule_runs",
            "Scheduled runs this process carried out, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )

    def count_recording(self, counts: RecordingCounts) -> None:
        """What a replica recorded and skipped since its last report."""
        for model, count in counts["recorded"].items():
            self.recorded.labels(model).inc(count)
        for reason, count in counts["unrecorded"].items():
            if reason in _UNRECORDED:
                self.unrecorded.labels(reason).inc(count)

    def exposition(self, totals: JobTotals) -> bytes:
        """This process's instruments and the platform's job totals, as Prometheus text."""
        platform = CollectorRegistry()
        platform.register(totals)
        return generate_latest(self.registry) + generate_latest(platform)


class JobTotals:
    """Training jobs by final status and their run times, kept in Redis by whoever ends
    a job (the job itself or the reconciler), so every API replica reports the same
    platform-wide values: aggregate them with max(), not sum()."""

    def __init__(
        self, counts: dict[str, int], durations: dict[str, float], buckets: tuple[int, ...]
    ) -> None:
        self.counts = counts
        self.durations = durations
        self.buckets = buckets

    def collect(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "mlops_training_jobs", "Training jobs ended, by final status.", labels=["status"]
        )
        for status, count in sorted(self.counts.items()):
            jobs.add_metric([status], count)
        yield jobs
        runtime = HistogramMetricFamily(
            "mlops_training_job_duration_seconds",
            "Run time of ended training jobs, by final status.",
            labels=["status"],
        )
        for status in sorted(self.counts):
            buckets = [
                (str(bound), self.durations.get(f"{status}:le:{bound}", 0.0))
                for bound in self.buckets
            ]
            buckets.append(("+Inf", self.durations.get(f"{status}:le:+Inf", 0.0)))
            runtime.add_metric([status], buckets, self.durations.get(f"{status}:sum", 0.0))
        yield runtime


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path or "unmatched"  # never the raw path: ids would explode the label set


class RequestTelemetry:
    def __init__(
        self, app: ASGIApp, *, instruments: Instruments, log_successes: bool = True
    ) -> None:
        self.app = app
        self.instruments = instruments
        self.log_successes = log_successes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # Unique, not secret: the pseudo-random generator, not the OS's random bytes.
        rid = given if _SANE_ID.match(given) else f"{random.getrandbits(128):032x}"
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500  # if the app raises before answering
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                self._observe(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not answered:  # an unhandled error: Starlette's outer layer answers 500
                self._observe(scope, status, time.perf_counter() - started)
            quiet = not self.log_successes or scope["path"] in {"/health", "/metrics"}
            if status >= 400 or not quiet:
                log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "route": _route_of(scope),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
            request_id.reset(token)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route, method = _route_of(scope), scope["method"]
        self.instruments.requests.labels(route, method, str(status)).inc()
        self.instruments.latency.labels(route, method).observe(seconds)
