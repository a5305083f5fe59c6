"""GET /metrics: the API's instruments and the platform's training totals, for Prometheus."""

from __future__ import annotations

from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from fastapi import APIRouter
from mlops.api.deps import UNAUTHORIZED, ServicesDep
from mlops.clients.redis import DURATION_BUCKETS

router = APIRouter(tags=["operations"], responses=UNAUTHORIZED)


class _JobTotals:
    """Training jobs by final status and their run times, kept in Redis by whoever ends
    a job (the job itself or the reconciler), so every API replica reports the same
    platform-wide values: aggregate them with max(), not sum()."""

    def __init__(self, counts: dict[str, int], durations: dict[str, float]) -> None:
        self.counts = counts
        self.durations = durations

    def collect(self):
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
                for bound in DURATION_BUCKETS
            ]
            buckets.append(("+Inf", self.durations.get(f"{status}:le:+Inf", 0.0)))
            runtime.add_metric([status], buckets, self.durations.get(f"{status}:sum", 0.0))
        yield runtime


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def prometheus_metrics(services: ServicesDep) -> Response:
    """Requests, inference, alerts, SSE clients and schedule runs of this process, and
    the platform's training job totals, in Prometheus' text format."""
    counts, durations = await services.jobs.totals()
    totals = CollectorRegistry()
    totals.register(_JobTotals(counts, durations))
    body = generate_latest(services.metrics.registry) + generate_latest(totals)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
