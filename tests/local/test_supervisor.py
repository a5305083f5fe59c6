"""The local platform's process handling: nothing outlives a stop."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from helpers import NOBODY, as_user

from mlops.local import components, leftovers, scratch
from mlops.local.__main__ import claim_pid_file, down, refused_data_dir, up
from mlops.local.components import Component, RayPorts
from mlops.local.platform import (
    LocalPlatform,
    check_python_path,
    ensure_dataset,
    isolated_settings,
    local_ray_ports,
)
from mlops.local.supervisor import StartupError, Supervisor, port_in_use
from mlops.ml import data
from mlops.settings.platform import PlatformSettings

# A parent that starts a child in a new session, as Ray's raylet starts its workers.
_ESCAPING_CHILD = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(120)'])\n"
    "time.sleep(120)\n"
)


def test_stop_kills_children_that_left_the_process_group(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    running = supervisor.start(Component("escaper", [sys.executable, "-c", _ESCAPING_CHILD]))
    parent = psutil.Process(running.process.pid)
    children = _wait_for_children(parent)

    supervisor.stop(running, grace=2)

    assert not parent.is_running()
    assert not any(child.is_running() for child in children)


def _wait_for_children(parent: psutil.Process) -> list[psutil.Process]:
    for _ in range(100):
        if children := parent.children(recursive=True):
            return children
        psutil.wait_procs([], timeout=0.05)
    pytest.fail("the test process never started its child")


def test_a_component_that_exits_at_start_reports_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    failing = Component(
        "broken",
        [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"],
        ready_port=1,
    )

    with pytest.raises(StartupError, match="broken exited with 3:\\nbad config"):
        supervisor.wait_ready([supervisor.start(failing)], timeout=10)


# Ray's `start` answers its health check, then exits: as it did when another user's Ray
# owned /tmp/ray and it could not write its address there.
_RAY_THAT_EXITS_ONCE_READY = """
import http.server, sys, threading, time
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"[]")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Answer)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(2)
print("PermissionError: [Errno 13] Permission denied: '/tmp/ray/ray_current_cluster'")
"""


def test_a_component_that_exits_after_ready_stops_the_start_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = isolated_settings(tmp_path)
    port = int(settings.ray_address.rsplit(":", 1)[1])
    ray = Component(
        "ray",
        [sys.executable, "-c", _RAY_THAT_EXITS_ONCE_READY, str(port)],
        ready_url=f"{settings.ray_address}/api/gcs_healthz",
    )
    other = Component("mlflow", [sys.executable, "-c", "import time; time.sleep(120)"])
    monkeypatch.setattr(LocalPlatform, "components", lambda self: [ray, other])
    platform = LocalPlatform(settings)

    with pytest.raises(StartupError, match="ray exited with 0:\nPermissionError"):
        platform.start(timeout=30)

    assert all(running.process.poll() is not None for running in platform.supervisor.running)
    shutil.rmtree(scratch.platform_folder(settings))


def test_a_python_environment_whose_path_has_a_space_is_refused_saying_how_to_move_it() -> None:
    check_python_path("/home/someone/clone/.venv")

    with pytest.raises(StartupError, match="has a space: /home/some one/.venv.*VENV="):
        check_python_path("/home/some one/.venv")


def test_a_start_keeps_the_newest_ray_sessions_and_removes_the_older_ones(tmp_path: Path) -> None:
    settings = PlatformSettings(data_dir=tmp_path)
    scratch.prepare(settings)
    ray_dir = components.ray_temp_dir(settings)
    # As Ray leaves its folder: a session per start, named by its start time, the newest
    # also linked as session_latest, and the cluster's address file.
    started = [f"session_2026-12-0{day}_10-00-00_000000_{100 + day}" for day in (7, 1, 5, 3, 2)]
    try:
        for name in started:
            (ray_dir / name / "logs").mkdir(parents=True)
            (ray_dir / name / "logs" / "raylet.out").write_text("logged")
        (ray_dir / "session_latest").symlink_to(ray_dir / started[0])
        (ray_dir / "ray_current_cluster").write_text("127.0.0.1:6379")

        leftovers.forget_old_ray_sessions(settings, keep=3)

        assert sorted(p.name for p in ray_dir.iterdir()) == [
            "ray_current_cluster",
            "session_2026-12-03_10-00-00_000000_103",
            "session_2026-12-05_10-00-00_000000_105",
            "session_2026-12-07_10-00-00_000000_107",
            "session_latest",
        ]
        assert (ray_dir / "session_latest" / "logs" / "raylet.out").read_text() == "logged"
    finally:
        shutil.rmtree(scratch.platform_folder(settings), ignore_errors=True)
    leftovers.forget_old_ray_sessions(settings)  # no folder yet: nothing to do


def test_down_with_no_platform_started_here_names_what_holds_the_api_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as listening:  # a platform started from another folder, say
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        settings = PlatformSettings(data_dir=tmp_path, api_port=listening.getsockname()[1])

        assert down(settings) == 1
        assert f"no platform was started with the data folder {tmp_path}" in caplog.text

    assert down(settings) == 0  # nothing listens now: nothing to stop


# A `make up` of the same data folder, holding its pid file from the first instant.
_STARTING_PLATFORM = """
import sys, time
from pathlib import Path
from mlops.local.__main__ import claim_pid_file
assert claim_pid_file(Path(sys.argv[1])) is not None
print("claimed", flush=True)
time.sleep(120)
"""


def test_a_second_up_of_the_same_data_folder_stops_while_the_first_holds_its_pid_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = PlatformSettings(data_dir=tmp_path)
    pid_file = tmp_path / "platform.pid"
    first = subprocess.Popen(
        [sys.executable, "-c", _STARTING_PLATFORM, str(pid_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout and first.stdout.readline() == "claimed\n"

        assert up(settings, tmp_path / "outputs") == 1

        assert "already running or starting" in caplog.text
        assert pid_file.read_text() == f"{first.pid}\n"  # the first's, untouched
        assert not (tmp_path / "api-token").exists()  # nothing of a start was begun
    finally:
        first.kill()
        first.wait()
    # The kernel let go of the lock with the process: a later start may take the file.
    claimed = claim_pid_file(pid_file)
    assert claimed is not None and pid_file.read_text() == f"{os.getpid()}\n"
    os.close(claimed)


def _named(uid: int) -> bool:
    try:
        return bool(pwd.getpwuid(uid))
    except KeyError:
        return False


def test_a_data_folder_of_another_user_is_refused_saying_whose_it_is(tmp_path: Path) -> None:
    owner = tmp_path.stat().st_uid
    owner_name = pwd.getpwuid(owner).pw_name
    # The clone's owner, say, after `sudo make up` there; one without a name.
    someone_else = next(uid for uid in range(60000, 65000) if not _named(uid))

    refused = refused_data_dir(tmp_path, uid=someone_else)

    assert refused is not None
    assert refused.startswith(f"{tmp_path} belongs to {owner_name}, who ran `make up` with it")
    assert f"`sudo -u {owner_name} make up`" in refused
    assert refused.endswith(f"`sudo chown -R {someone_else} {tmp_path}`")  # no name: its uid
    assert refused_data_dir(tmp_path, uid=owner) is None
    assert refused_data_dir(tmp_path, uid=0) is None  # root may run anyone's


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a folder to another user")
def test_a_data_folder_of_a_user_without_a_name_is_refused_naming_its_uid(tmp_path: Path) -> None:
    unnamed = next(uid for uid in range(60000, 65000) if not _named(uid))
    os.chown(tmp_path, unnamed, unnamed)

    refused = refused_data_dir(tmp_path, uid=1000)

    assert refused is not None
    assert f"belongs to uid {unnamed}, who ran" in refused
    assert f"(`sudo -u '#{unnamed}' make up`)" in refused  # as sudo takes a bare uid


def _down_logged(settings: PlatformSettings) -> tuple[int, list[str]]:
    """`make down`: its exit code and what it logged."""
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("mlops.local").addHandler(handler)
    return down(settings), logged


@pytest.mark.skipif(os.getuid() != 0, reason="only root can start what another user cannot stop")
def test_down_by_another_user_says_who_can_stop_the_platform() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="mlops-down-"))
    data_dir.chmod(0o755)  # its pid file readable by all, as `sudo make up` leaves it
    first = subprocess.Popen(
        [sys.executable, "-c", _STARTING_PLATFORM, str(data_dir / "platform.pid")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout and first.stdout.readline() == "claimed\n"
        code, logged = as_user(NOBODY, lambda: _down_logged(PlatformSettings(data_dir=data_dir)))

        assert code == 1
        assert logged == [f"the platform (pid {first.pid}) runs as root: `sudo -u root make down`"]
        assert first.poll() is None  # still running
    finally:
        first.kill()
        first.wait()
        shutil.rmtree(data_dir)


def test_dataset_is_written_once_when_missing(tmp_path: Path) -> None:
    settings = PlatformSettings(data_dir=tmp_path)

    assert ensure_dataset(settings) is True
    assert ensure_dataset(settings) is False
    assert data.read_dataset(settings.dataset_uri).equals(data.iris_frame())


def test_make_up_leaves_ray_s_default_ports_to_whatever_holds_them(tmp_path: Path) -> None:
    settings = PlatformSettings(data_dir=tmp_path)
    defaults = RayPorts()
    with socket.socket() as listening:  # another platform's Ray agent, say
        with contextlib.suppress(OSError):  # or that platform itself, running here
            listening.bind(("127.0.0.1", defaults.dashboard_agent))
            listening.listen()

        ports = local_ray_ports(settings)

    assert defaults.dashboard_agent not in (ports.client_server, ports.dashboard_agent)
    assert defaults.client_server != ports.client_server
    if not (port_in_use(defaults.client_server) or port_in_use(defaults.dashboard_agent)):
        assert local_ray_ports(settings) == defaults  # free again: Ray's own


def test_a_throwaway_platforms_ports_are_all_distinct(tmp_path) -> None:
    # Picked one at a time, two parts once got the same port and Ray refused to start.
    from mlops.local.platform import free_ports, isolated_ray_ports, isolated_settings

    for _ in range(20):
        settings = isolated_settings(tmp_path)
        ray = isolated_ray_ports(settings)
        ports = [
            settings.api_port,
            settings.ray_gcs_port,
            settings.dashboard_port,
            settings.serve_haproxy_stats_port,
            settings.serve_haproxy_metrics_port,
            *(int(u.rsplit(":", 1)[1].split("/")[0]) for u in (
                settings.ray_address, settings.serve_url,
                settings.mlflow_tracking_uri, settings.redis_url)),
            ray.client_server,
            ray.dashboard_agent,
        ]  # fmt: skip
        assert len(set(ports)) == len(ports) == 11
    taken = set(free_ports(50))
    assert not taken & set(free_ports(50, besides=taken))


def test_picked_ports_are_none_the_kernel_or_ray_hands_out() -> None:
    # Serve's HAProxy binds its ports at the first deployment, minutes after they are
    # picked; one picked by binding port 0 was by then a client's ephemeral port.
    from mlops.local.platform import free_ports

    low, _high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = free_ports(200)
    assert all(19999 < port < low for port in ports)
    assert len(set(ports)) == 200


def test_components_share_the_supervisors_session_and_yield_by_niceness(tmp_path: Path) -> None:
    """MLflow's server on `make up`'s one machine: at the training niceness, in the
    platform's session with Ray and the API, in a process group of its own. Where the
    kernel groups processes by session, its niceness then counts against them; a
    session of its own would take as much CPU as all of theirs. The session's group is
    left as it is."""
    supervisor = Supervisor(tmp_path)
    report = tmp_path / "niceness"
    probe = (
        "import os, pathlib, sys\n"
        "group = pathlib.Path('/proc/self/autogroup')\n"
        "found = [os.getpriority(os.PRIO_PROCESS, 0), os.getsid(0), os.getpgid(0)]\n"
        "found.append(repr(group.read_text()) if group.exists() else 'none')\n"
        "pathlib.Path(sys.argv[1]).write_text(' '.join(map(str, found)))\n"
    )
    group_before = _session_group_niceness()
    running = supervisor.start(
        Component("nice", [sys.executable, "-c", probe, str(report)], niceness=10)
    )
    running.process.wait(timeout=30)

    niceness, session, process_group, group = report.read_text().split(" ", 3)
    assert int(niceness) == 10
    assert int(session) == os.getsid(0)  # the supervisor's (this test's) session
    assert int(process_group) == running.process.pid  # its own, for its stop
    assert group == group_before == _session_group_niceness()


def _session_group_niceness() -> str:
    """What the kernel shows of this session's group, as the probe reports it: empty
    text in the kernel's default group (a container's first session, say)."""
    group = Path("/proc/self/autogroup")
    return repr(group.read_text()) if group.exists() else "none"
