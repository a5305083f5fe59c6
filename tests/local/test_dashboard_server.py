"""The dashboard's fallback server (`make up` without nginx), on the running platform."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers import API_TOKEN, SseReader, free_port, platform_settings

from mlops.contracts.model_definition import ESTIMATORS, Estimator, Task
from mlops.local import components
from mlops.local.dashboard import frontend_dir
from mlops.local.supervisor import Supervisor
from mlops.ml.estimators import Family
from mlops.settings.platform import PlatformSettings


@pytest.mark.slow
def test_fallback_server_serves_the_page_and_proxies_the_api(
    platform, settings: PlatformSettings, tmp_path: Path
) -> None:
    local = settings.model_copy(update={"dashboard_port": free_port()})
    supervisor = Supervisor(tmp_path, base_env={**os.environ, **local.as_env(include_secrets=True)})
    component = components.dashboard(local, prefer_nginx=False)
    assert "mlops.local.dashboard:app" in component.command
    supervisor.wait_ready([supervisor.start(component)], timeout=60)
    base = f"http://127.0.0.1:{local.dashboard_port}"
    reader = None
    try:
        page = httpx.get(f"{base}/")
        chart = httpx.get(f"{base}/vendor/chart.umd.min.js")
        health = httpx.get(f"{base}/api/health")
        rejected = httpx.post(  # the Authorization header must pass the proxy
            f"{base}/api/trigger_training",
            json={"hyperparameters": {"n_estimator": 1}},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        reader = SseReader(f"{base}/api/webhook")

        assert page.status_code == 200 and "MLOps dashboard" in page.text
        assert chart.status_code == 200 and len(chart.content) > 100_000
        assert health.json() == {"status": "ok"}
        assert rejected.status_code == 422
        assert rejected.json()["detail"][0]["loc"][-1] == "n_estimator"
        assert reader.next("ready").id  # the SSE stream flows through the proxy
    finally:
        if reader:
            reader.close()
        supervisor.stop_all()


def test_nginx_serves_a_dashboard_from_a_private_folder_with_a_space_in_its_name(
    tmp_path: Path,
) -> None:
    """As root too: nginx's workers would run as `nobody`, who cannot enter a private
    folder such as a clone under /root (mode 700). And a clone's folder may have a
    space in its name, which nginx reads as the end of a path unless quoted."""
    private = tmp_path / "home"
    root = private / "my checkout" / "frontend"
    shutil.copytree(frontend_dir(), root, ignore=shutil.ignore_patterns("node_modules"))
    private.chmod(0o700)
    local = platform_settings(private / "my checkout" / ".data")
    component = components.dashboard(local, root=root)
    assert "nginx" in component.command[0], "nginx is needed here (make system-deps)"
    supervisor = Supervisor(tmp_path / "logs")
    try:
        supervisor.wait_ready([supervisor.start(component)], timeout=30)
        base = f"http://127.0.0.1:{local.dashboard_port}"

        page = httpx.get(f"{base}/")
        script = httpx.get(f"{base}/js/main.js")

        assert page.status_code == 200 and "MLOps dashboard" in page.text
        assert script.status_code == 200
    finally:
        supervisor.stop_all()


@pytest.mark.slow
def test_nginx_limits_the_request_rate_of_one_client_on_the_api(
    platform, settings: PlatformSettings, tmp_path: Path
) -> None:
    local = settings.model_copy(update={"dashboard_port": free_port(), "data_dir": tmp_path})
    supervisor = Supervisor(tmp_path / "logs")
    component = components.dashboard(local)
    assert "nginx" in component.command[0], "nginx is needed here (make system-deps)"
    try:
        supervisor.wait_ready([supervisor.start(component)], timeout=30)
        with httpx.Client(base_url=f"http://127.0.0.1:{local.dashboard_port}") as client:
            statuses = [client.get("/api/health").status_code for _ in range(300)]
            page = client.get("/")

        assert statuses[:100] == [200] * 100  # a burst passes at once
        assert 429 in statuses  # a flood does not
        assert page.status_code == 200  # the page itself is not limited
    finally:
        supervisor.stop_all()


def test_nginx_holds_as_many_streams_per_client_as_configured_then_429(
    platform, settings: PlatformSettings, tmp_path: Path
) -> None:
    local = settings.model_copy(
        update={
            "dashboard_port": free_port(),
            "data_dir": tmp_path,
            "dashboard_client_connections": 3,
        }
    )
    supervisor = Supervisor(tmp_path / "logs")
    held: list[SseReader] = []
    try:
        supervisor.wait_ready([supervisor.start(components.dashboard(local))], timeout=30)
        base = f"http://127.0.0.1:{local.dashboard_port}"
        for _ in range(3):
            held.append(SseReader(f"{base}/api/webhook"))
            held[-1].next("ready")

        refused = httpx.get(f"{base}/api/webhook", timeout=10)

        assert refused.status_code == 429
    finally:
        for reader in held:
            reader.close()
        supervisor.stop_all()


def test_the_image_main_config_passes_nginx_with_the_rendered_server_block(
    tmp_path: Path,
) -> None:
    """The dashboard image's main config (frontend/nginx-main.conf), checked by a real
    nginx (`nginx -t`) with the server block rendered from the image's defaults, as its
    entrypoint does. Only the image's absolute paths move under a temporary folder, and
    the API upstream is a local address (nginx resolves it while checking)."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    assert nginx, "nginx is needed here (make system-deps)"
    dockerfile = (frontend_dir() / "Dockerfile").read_text()
    defaults = dict(re.findall(r"\b(DASHBOARD_\w+|MLOPS_API_UPSTREAM)=(\S+)", dockerfile))
    defaults["MLOPS_API_UPSTREAM"] = "http://127.0.0.1:9"
    server = (frontend_dir() / "nginx.conf").read_text()
    for name, value in defaults.items():
        server = server.replace(f"${{{name}}}", value)
    for folder in ("conf.d", "run", "logs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "conf.d" / "default.conf").write_text(server)
    (tmp_path / "mime.types").write_text("types { text/html html; text/css css; }\n")
    main = (frontend_dir() / "nginx-main.conf").read_text()
    for image_path, here in {
        "/tmp/": f"{tmp_path}/run/",  # first: the folders below are under /tmp too
        "/etc/nginx/conf.d/": f"{tmp_path}/conf.d/",
        "/etc/nginx/mime.types": f"{tmp_path}/mime.types",
        "/var/log/nginx/": f"{tmp_path}/logs/",
    }.items():
        assert image_path in main, image_path
        main = main.replace(image_path, here)
    (tmp_path / "nginx.conf").write_text(main)

    check = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            str(tmp_path / "logs" / "error.log"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert check.returncode == 0, check.stderr
    assert "syntax is ok" in check.stderr and "test is successful" in check.stderr


def test_the_dashboards_estimators_are_the_platforms() -> None:
    """The new-model form offers per task what POST /models accepts, and the train form
    asks by name only for hyperparameters the model's estimator takes."""
    script = (frontend_dir() / "js" / "estimators.js").read_text()
    forms = json.loads(script.split("/* JSON */")[1].split("/* end JSON */")[0])

    assert forms["estimators"] == {t.value: [e.value for e in ESTIMATORS[t]] for t in Task}
    assert set(forms["hyperparameters"]) == {e.value for e in Estimator}
    for task in Task:
        for estimator in ESTIMATORS[task]:
            asked = forms["hyperparameters"][estimator.value]
            family = Family(task, estimator)
            for parameter in asked:
                family.check({parameter["name"]: 2}, max_size=10, max_depth_limit=10)
