"""What `make up` reads (`mlops.local`): everything the API reads, since it starts the
API, Ray and the replicas, and where each local process listens."""

from __future__ import annotations

from pydantic import Field

from mlops.settings.api import ApiSettings


class PlatformSettings(ApiSettings):
    api_host: str = Field("127.0.0.1", description="Interface the API listens on.")
    api_port: int = Field(8888, description="Port of the API (Swagger at /docs).")
    dashboard_port: int = Field(5001, description="Port of the dashboard.")
    dashboard_client_connections: int = Field(
        2048,
        ge=1,
        description="Connections one client address may hold open through the dashboard's"
        " /api/ proxy, alert streams included (nginx limit_conn; more get 429).",
    )
    ray_gcs_port: int = Field(
        6385, description="Port of the local Ray head's GCS (kept off Redis's 6379)."
    )
    ray_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs of the local Ray head (default: the machine's, at least 4, "
        "so a training and Serve replicas share a laptop's cores).",
    )
    serve_haproxy_stats_port: int = Field(
        8404, description="Port of Serve's HAProxy stats page (Linux)."
    )
    serve_haproxy_metrics_port: int = Field(
        9101, description="Port of Serve's HAProxy Prometheus metrics (Linux)."
    )
