"""The names the platform calls its servers by in the cluster, tried against real servers.

MLflow ≥ 3.5 answers 403 to a Host header it does not list, and exempts /health, so a
missing name leaves readiness green while every call fails. Here a real MLflow server
runs with MLFLOW_SERVER_ALLOWED_HOSTS built from helm-values/mlflow.yaml the way the
pinned chart builds it, and is sent each in-cluster Host of manifests/. Ray's dashboard
and Serve do not check names: the test proves that too, on the session's platform.
MinIO and Redis are reached by the same names but do not check them (MinIO compares
the Host only with the one the client signed, which is the one it sends).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from helpers import free_port, ray_headers, run_async
from infra import kube

from mlops.clients.mlflow_registry import MlflowRegistry, MlflowUnavailable
from mlops.local import components
from mlops.local.supervisor import Supervisor
from mlops.settings.platform import PlatformSettings

pytestmark = [pytest.mark.platform, pytest.mark.slow]

SEARCH = "/api/2.0/mlflow/registered-models/search"
BROWSER_HOSTS = ("127.0.0.1:5555", "localhost:5555")


def _host_header(url: str) -> str:
    """The Host an HTTP client sends for `url` (no port when it is the scheme's default)."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    port = parts.port or default
    return parts.hostname if port == default else f"{parts.hostname}:{port}"  # type: ignore[return-value]


@pytest.fixture(scope="module")
def chart_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow server with the allowed hosts the chart renders from our values."""
    folder: Path = tmp_path_factory.mktemp("chart-mlflow")
    values = yaml.safe_load((kube.ROOT / "helm-values" / "mlflow.yaml").read_text())
    port = free_port()
    settings = PlatformSettings(
        environment="development",
        data_dir=folder,
        mlflow_tracking_uri=f"http://127.0.0.1:{port}",
    )
    component = components.mlflow(settings)
    env = {**component.env, "MLFLOW_SERVER_ALLOWED_HOSTS": kube.chart_allowed_hosts(values)}
    supervisor = Supervisor(folder / "logs")
    running = supervisor.start(dataclasses.replace(component, env=env))
    try:
        supervisor.wait_ready([running], timeout=90)
        yield settings.mlflow_tracking_uri
    finally:
        supervisor.stop_all()


def test_the_chart_renders_our_allowed_hosts_from_the_values_file() -> None:
    values = yaml.safe_load((kube.ROOT / "helm-values" / "mlflow.yaml").read_text())

    rendered = kube.chart_allowed_hosts(values).split(",")

    assert _host_header(kube.api_settings()["MLOPS_MLFLOW_TRACKING_URI"]) in rendered
    assert "*" not in rendered  # a wildcard would turn MLflow's protection off


def test_mlflow_answers_the_in_cluster_host_the_platform_calls_it_by(chart_mlflow: str) -> None:
    tracking_uri = kube.api_settings()["MLOPS_MLFLOW_TRACKING_URI"]
    host = _host_header(tracking_uri)

    with httpx.Client(base_url=chart_mlflow, timeout=10) as http:
        response = http.get(SEARCH, headers={"Host": host})
        with_port = http.get(SEARCH, headers={"Host": f"{urlsplit(tracking_uri).hostname}:80"})

    assert response.status_code == 200, response.text
    assert with_port.status_code == 200, with_port.text


def test_mlflow_answers_the_browser_on_the_host_port_kind_maps(chart_mlflow: str) -> None:
    kind_config = (kube.ROOT / "config" / "kind-config.yaml").read_text()
    assert "hostPort: 5555" in kind_config  # the README's MLflow address

    with httpx.Client(base_url=chart_mlflow, timeout=10) as http:
        answers = {h: http.get(SEARCH, headers={"Host": h}).status_code for h in BROWSER_HOSTS}

    assert answers == dict.fromkeys(BROWSER_HOSTS, 200)


def test_mlflow_refuses_a_foreign_host_but_health_still_answers(chart_mlflow: str) -> None:
    with httpx.Client(base_url=chart_mlflow, timeout=10) as http:
        refused = http.get(SEARCH, headers={"Host": "attacker.example"})
        health = http.get("/health", headers={"Host": "attacker.example"})

    assert refused.status_code == 403
    assert "Invalid Host header" in refused.text
    assert health.status_code == 200  # why readiness must not rely on /health


def test_readiness_names_the_host_check_when_mlflow_refuses_the_host(chart_mlflow: str) -> None:
    async def check() -> str:
        headers = {"Host": "mlflow.elsewhere.svc.cluster.local"}
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            with pytest.raises(MlflowUnavailable) as refused:
                await MlflowRegistry(http, chart_mlflow).health()
        return str(refused.value)

    message = run_async(check())

    assert "mlflow.elsewhere.svc.cluster.local" in message
    assert "MLFLOW_SERVER_ALLOWED_HOSTS" in message
    assert "credentials" not in message


def test_ray_dashboard_and_serve_answer_their_in_cluster_names(
    platform, settings, champion_served
) -> None:
    config = kube.api_settings()
    dashboard_host = _host_header(config["MLOPS_RAY_ADDRESS"])
    serve_host = _host_header(config["MLOPS_SERVE_URL"])

    with httpx.Client(timeout=10, headers=ray_headers()) as http:
        dashboard = http.get(
            f"{settings.ray_address}/api/version", headers={"Host": dashboard_host}
        )
        serve = http.get(f"{settings.serve_url}/-/healthz", headers={"Host": serve_host})

    assert dashboard.status_code == 200, dashboard.text
    assert serve.status_code == 200, serve.text
