"""`make up` and `make down` as a user runs them: the real commands, end to end."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import API_TOKEN, platform_settings, ray_headers, run_cli, wait_for

from mlops.local import components, scratch
from mlops.local.components import RayPorts
from mlops.settings.platform import PlatformSettings

MLOPS = str(Path(sys.executable).with_name("mlops"))

pytestmark = [pytest.mark.slow, pytest.mark.platform]  # it starts a whole platform itself


def _processes_using(folder: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(folder) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def _serving_status(settings: PlatformSettings) -> str | None:
    applications = httpx.get(
        f"{settings.ray_address}/api/serve/applications/", headers=ray_headers(), timeout=10
    ).json()["applications"]
    return (applications.get("models") or {}).get("status")


def _train_then_predict(settings: PlatformSettings) -> None:
    """A user's first minutes: a training, then a prediction. Serving starts as soon
    as the training's alert names the first champion, and the prediction waits for it."""
    api_url = f"http://127.0.0.1:{settings.api_port}"
    assert _serving_status(settings) is None  # no champion yet: nothing to serve
    asked = time.monotonic()
    early = run_cli(api_url, "predict", "5.1", "3.5", "1.4", "0.2")
    assert early.returncode == 1 and "no champion yet: train it" in early.stderr, early.stderr
    assert time.monotonic() - asked < 30  # told at once, not after the wait for serving

    trained = run_cli(api_url, "train", "--wait")
    assert trained.returncode == 0 and "now the champion" in trained.stdout, trained.stderr
    wait_for(
        lambda: _serving_status(settings) in {"DEPLOYING", "RUNNING"},
        timeout=60,  # Serve's controller starts first, on a fresh Ray
        what="serving to be deployed on the first champion's alert",
    )
    predicted = run_cli(api_url, "predict", "5.1", "3.5", "1.4", "0.2")

    assert predicted.returncode == 0 and predicted.stdout.startswith("Setosa"), predicted.stderr


@contextlib.contextmanager
def _up(settings: PlatformSettings, outputs: Path) -> Iterator[subprocess.Popen[str]]:
    """`mlops up`, as `make up` runs it; stopped afterwards if it still runs (SIGTERM:
    the supervisor stops its components), and its Ray folder under /tmp removed."""
    up = subprocess.Popen(
        [MLOPS, "up", "--outputs", str(outputs)],
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield up
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(60)
        shutil.rmtree(scratch.platform_folder(settings), ignore_errors=True)


def _down(settings: PlatformSettings) -> subprocess.CompletedProcess[str]:
    """`mlops down`, as `make down` runs it."""
    return subprocess.run(
        [MLOPS, "down"], env=_env(settings), timeout=90, capture_output=True, text=True
    )


def _env(settings: PlatformSettings) -> dict[str, str]:
    return {**os.environ, **settings.as_env(include_secrets=True)}


def _printed(up: subprocess.Popen[str]) -> str:
    return up.stdout.read() if up.stdout else ""


@contextlib.contextmanager
def _holding_ray_s_default_ports() -> Iterator[None]:
    """Ray's default client-server and agent ports held, as the `make up` of another
    clone holds them (one held elsewhere already stays so)."""
    with contextlib.ExitStack() as held:
        for port in (RayPorts().client_server, RayPorts().dashboard_agent):
            listening = held.enter_context(socket.socket())
            with contextlib.suppress(OSError):
                listening.bind(("127.0.0.1", port))
                listening.listen()
        yield


def test_up_serves_the_platform_and_down_leaves_no_process(tmp_path: Path) -> None:
    # The API's own look for a serving to deploy, far away: only the first champion's
    # alert can start serving in this test.
    settings = platform_settings(tmp_path / "data", serve_check_seconds=600)
    outputs = tmp_path / "outputs"
    # Sessions that earlier runs left in the platform's Ray folder, oldest first.
    scratch.prepare(settings)
    earlier = [
        components.ray_temp_dir(settings) / f"session_2000-01-0{d}_10-00-00_0_1" for d in "1234"
    ]
    for session in earlier:
        (session / "logs").mkdir(parents=True)
    # Beside another platform: its Ray agent on the default port, which this one's must
    # leave (or it would start, and never run a job).
    with _holding_ray_s_default_ports(), _up(settings, outputs) as up:
        wait_for(
            lambda: (outputs / "urls.txt").exists() or up.poll() is not None,
            timeout=180,
            what="make up to print its URLs",
        )
        assert up.poll() is None, _printed(up)
        urls = (outputs / "urls.txt").read_text()
        # The data folder it made is its user's alone (tokens, models, predictions).
        assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
        assert f"http://127.0.0.1:{settings.api_port}/docs" in urls
        assert settings.mlflow_tracking_uri in urls
        ready = httpx.get(f"http://127.0.0.1:{settings.api_port}/ready", timeout=10).json()
        assert ready["ready"] is True, ready
        assert Path(settings.dataset_uri).exists()
        # Ray's sessions are in a folder of this platform's: the machine's /tmp/ray may
        # be another user's.
        ray_logs = components.ray_logs_dir(settings)
        assert ray_logs.is_dir() and ray_logs.parent.parent == components.ray_temp_dir(settings)
        # The three newest earlier sessions stay beside the new one; older ones go.
        assert [session.is_dir() for session in earlier] == [False, True, True, True]
        _train_then_predict(settings)

        down = _down(settings)

        assert down.returncode == 0, down.stdout + down.stderr
        assert up.wait(30) == 0
        printed = _printed(up)
        assert f"API token for writes (Authorization: Bearer …): {API_TOKEN}" in printed
        assert f"Ray's in {ray_logs}." in printed
        assert _processes_using(settings.data_dir) == []


def test_down_during_the_start_stops_the_start_and_what_it_began(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path / "data")
    # What a search left, as every search did before searches removed their own.
    ended_search = settings.tune_dir / "tune-0123456789ab" / "tuner.pkl"
    ended_search.parent.mkdir(parents=True)
    ended_search.write_bytes(b"the settings of a search's job")
    with _up(settings, tmp_path / "outputs") as up:
        wait_for(
            lambda: len(_processes_using(settings.data_dir)) >= 3 or up.poll() is not None,
            timeout=60,
            what="the start to be under way",
        )
        assert not settings.tune_dir.exists()  # no search runs before Ray does
        down = _down(settings)

        assert down.returncode == 0 and "the platform is stopped" in down.stderr, down.stderr
        assert up.wait(30) == 128 + 15  # stopped by SIGTERM, as `make down` sends
        printed = _printed(up)
        assert "stopped during its start (SIGTERM)" in printed and "platform ready" not in printed
        assert _processes_using(settings.data_dir) == []
        assert not (settings.data_dir / "platform.pid").exists()
