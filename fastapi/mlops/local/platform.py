"""The whole platform on one machine: Redis-compatible server, MLflow, Ray and the API."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import socket
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from pydantic import SecretStr

from mlops.clients.ray_jobs import auth_headers
from mlops.clients.redis import users as redis_users
from mlops.clients.redis.users import RedisUser
from mlops.local import components, leftovers, scratch
from mlops.local.components import Component, RayPorts
from mlops.local.dashboard import assets_missing
from mlops.local.supervisor import StartupError, Supervisor, port_in_use
from mlops.ml import data
from mlops.settings.base import API_TOKEN_FILE
from mlops.settings.platform import PlatformSettings

log = logging.getLogger("mlops.local")


# Binding port 0 or connecting out takes a port from the kernel's ephemeral range, and
# Ray's workers take 10002-19999: a port picked between the two stays free until the part
# it is meant for binds it, minutes later for Serve's HAProxy (at the first deployment).
# Picked by binding port 0, one was once taken by then and serving never started.
_RAY_WORKER_PORTS_END = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _pickable_ports() -> range:
    """Ports above Ray's worker ports and below the ephemeral range (Linux's is read;
    elsewhere 49152 and up, as on macOS and by IANA)."""
    ephemeral_start = 49152
    with contextlib.suppress(OSError, ValueError):
        ephemeral_start = int(_EPHEMERAL_RANGE.read_text().split()[0])
    return range(_RAY_WORKER_PORTS_END, max(ephemeral_start, _RAY_WORKER_PORTS_END + 1000))


def free_ports(count: int, *, besides: Collection[int] = ()) -> list[int]:
    """`count` distinct TCP ports on loopback that nothing listens on now, none in
    `besides`, none the kernel hands out by itself (_pickable_ports). All are held while
    they are picked, so none is handed out twice."""
    candidates = [port for port in _pickable_ports() if port not in besides]
    random.shuffle(candidates)
    found: list[int] = []
    with contextlib.ExitStack() as held:
        for port in candidates:
            if len(found) == count:
                break
            sock = held.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            found.append(port)
    if len(found) < count:
        raise OSError(f"fewer than {count} free ports in {_pickable_ports()}")
    return found


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    return free_ports(1)[0]


def isolated_settings(data_dir: Path, **overrides: Any) -> PlatformSettings:
    """PlatformSettings of a throwaway platform: every port free, state in `data_dir`, a fresh
    API token. The tests and benchmarks start theirs so, beside any `make up`."""
    api, ray, gcs, serve, mlflow, redis, dashboard, stats, metrics = free_ports(9)
    values: dict[str, Any] = {
        "api_token": secrets.token_urlsafe(24),
        "ray_auth_token": secrets.token_urlsafe(24),
        "redis_password": secrets.token_urlsafe(24),
        "model_signing_key": secrets.token_urlsafe(32),
        "data_dir": data_dir,
        "api_port": api,
        "ray_address": f"http://127.0.0.1:{ray}",
        "ray_gcs_port": gcs,
        "serve_url": f"http://127.0.0.1:{serve}",
        "mlflow_tracking_uri": f"http://127.0.0.1:{mlflow}",
        "redis_url": f"redis://127.0.0.1:{redis}/0",
        "dashboard_port": dashboard,
        "serve_haproxy_stats_port": stats,
        "serve_haproxy_metrics_port": metrics,
        **overrides,
    }
    return PlatformSettings(**values)


def raise_open_files_limit() -> None:
    """Let this process and the components it starts open as many files as the system
    allows them (the soft limit up to the hard one): every alert stream holds a socket
    in the API and two in nginx, and a soft limit of 1024 is common."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def local_ray_ports(settings: PlatformSettings) -> RayPorts:
    """The Ray head's other ports for `make up`: Ray's defaults, unless something holds
    one of them (the platform of another clone, or of another user: ports are the
    machine's), then free ones. Only Ray itself reaches them; a Ray head whose agent
    cannot take its port starts all the same, and then never runs a job."""
    defaults = RayPorts()
    if port_in_use(defaults.client_server) or port_in_use(defaults.dashboard_agent):
        ports = isolated_ray_ports(settings)
        log.info(
            "Ray's default ports are taken: its client server on %d, its agent on %d",
            ports.client_server,
            ports.dashboard_agent,
        )
        return ports
    return defaults


def isolated_ray_ports(settings: PlatformSettings) -> RayPorts:
    """Ray head ports off their defaults, so the platform runs beside a `make up`, and
    apart from the ports `settings` already give its other parts."""
    taken = {
        settings.api_port,
        settings.ray_gcs_port,
        settings.dashboard_port,
        settings.serve_haproxy_stats_port,
        settings.serve_haproxy_metrics_port,
        *(
            urlparse(url).port
            for url in (
                settings.ray_address,
                settings.serve_url,
                settings.mlflow_tracking_uri,
                settings.redis_url,
            )
        ),
    }
    client_server, dashboard_agent = free_ports(2, besides={p for p in taken if p})
    return RayPorts(client_server=client_server, dashboard_agent=dashboard_agent)


def ensure_dataset(settings: PlatformSettings) -> bool:
    """Write iris to the dataset location if nothing is there; True if it wrote."""
    uri = settings.dataset_uri
    if uri.startswith("s3://"):
        return False  # a bucket is provisioned by its owner (init.sh in the cluster)
    wrote = data.ensure_iris(uri)
    if wrote:
        log.info("wrote the iris dataset to %s", uri)
    return wrote


def _kept_secret(path: Path) -> str:
    """The secret kept at `path` (mode 600), created on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token


def with_api_token(settings: PlatformSettings) -> PlatformSettings:
    """These settings with an API token: MLOPS_API_TOKEN if set, else the one kept in
    DATA_DIR/api-token (mode 600), created on first use, so the dashboard keeps working
    across restarts."""
    if settings.api_token is not None:
        return settings
    token = _kept_secret(settings.data_dir / API_TOKEN_FILE)
    return settings.model_copy(update={"api_token": SecretStr(token)})


def with_redis_password(settings: PlatformSettings) -> PlatformSettings:
    """For the embedded server: MLOPS_REDIS_PASSWORD if set, else one kept in
    DATA_DIR/redis-password (mode 600), created on first use."""
    if settings.redis_password is not None:
        return settings
    password = _kept_secret(settings.data_dir / "redis-password")
    return settings.model_copy(update={"redis_password": SecretStr(password)})


def with_signing_key(settings: PlatformSettings) -> PlatformSettings:
    """These settings with the key that seals registered versions: MLOPS_MODEL_SIGNING_KEY
    if set, else the one kept in DATA_DIR/signing-key (mode 600), created on first use,
    so the versions a platform registered stay trusted across restarts."""
    if settings.model_signing_key is not None:
        return settings
    key = _kept_secret(settings.data_dir / "signing-key")
    return settings.model_copy(update={"model_signing_key": SecretStr(key)})


def with_ray_token(settings: PlatformSettings) -> PlatformSettings:
    """These settings with a Ray token, kept in DATA_DIR/ray-token (mode 600), where the
    Ray head reads it (RAY_AUTH_TOKEN_PATH): MLOPS_RAY_AUTH_TOKEN if set, else the kept
    one, created on first use. Ray's Jobs API runs code: it never runs without one."""
    path = settings.data_dir / "ray-token"
    if settings.ray_auth_token is None:
        return settings.model_copy(update={"ray_auth_token": SecretStr(_kept_secret(path))})
    token = settings.ray_auth_token.get_secret_value()
    if not path.exists() or path.read_text().strip() != token:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(token + "\n")
    return settings


def should_embed_redis(settings: PlatformSettings) -> bool:
    """Run the embedded server unless MLOPS_REDIS_URL names a remote host or a server
    already answers there (then that one is used)."""
    url = urlparse(settings.redis_url)
    if url.hostname not in {"127.0.0.1", "localhost", "::1"}:
        log.info("using the Redis server at %s:%s", url.hostname, url.port)
        return False
    if port_in_use(url.port or 6379):
        log.info("using the Redis-compatible server already running on port %s", url.port)
        return False
    return True


def check_python_path(prefix: str = sys.prefix) -> None:
    """Ray starts some of its processes through a shell, their paths unquoted: from a
    Python environment whose path has a space, they fail (ray-project/ray#5288)."""
    if any(character.isspace() for character in prefix):
        raise StartupError(
            f"Ray cannot start from a Python environment whose path has a space: {prefix}. "
            "Make one elsewhere (`make up VENV=/path/without/spaces`)."
        )


@dataclass
class LocalPlatform:
    settings: PlatformSettings
    embed_redis: bool = True
    with_api: bool = True
    with_dashboard: bool = True
    # Ray's defaults unless taken (`local_ray_ports`); throwaway platforms pass theirs.
    ray_ports: RayPorts | None = None

    def __post_init__(self) -> None:
        if self.ray_ports is None:
            self.ray_ports = local_ray_ports(self.settings)
        self.settings = with_signing_key(with_ray_token(self.settings))
        if self.embed_redis:
            self.settings = with_redis_password(self.settings)
        # No secret for everyone: each component adds the ones it uses (components.py).
        inherited = {
            k: v for k, v in os.environ.items() if k not in PlatformSettings.per_process_variables()
        }
        env = {**inherited, **self.settings.as_env(include_secrets=False)}
        self.supervisor = Supervisor(
            self.settings.data_dir / "logs", base_env=env, cwd=self.settings.data_dir
        )

    @property
    def _ray_ports(self) -> RayPorts:
        assert self.ray_ports is not None  # chosen in __post_init__
        return self.ray_ports

    def components(self) -> list[Component]:
        parts = [
            components.mlflow(self.settings),
            components.ray_head(self._as_redis_user(redis_users.RAY), self._ray_ports),
        ]
        if self.embed_redis:
            parts.insert(0, components.valkey(self.settings))
        if self.with_api:
            parts.append(components.api(self._as_redis_user(redis_users.API)))
            if self.with_dashboard:
                if reason := assets_missing():
                    log.warning("the dashboard is not started: %s", reason)
                else:
                    parts.append(components.dashboard(self.settings))
        return parts

    def _as_redis_user(self, user: RedisUser) -> PlatformSettings:
        """The embedded server's `user` for a component; a server of one's own
        (MLOPS_REDIS_URL) is signed in to as configured."""
        if not self.embed_redis:
            return self.settings
        return components.as_redis_user(self.settings, user)

    def urls(self) -> dict[str, str]:
        s = self.settings
        urls = {
            "Dashboard": f"http://127.0.0.1:{s.dashboard_port}",
            "API (Swagger)": f"http://{s.api_host}:{s.api_port}/docs",
            "Ray dashboard": s.ray_address,
            "Ray Serve": s.serve_url,
            "MLflow": s.mlflow_tracking_uri,
            "Redis": s.redis_url,
        }
        if not (self.with_api and self.with_dashboard) or assets_missing():
            urls.pop("Dashboard")
        if not self.with_api:
            urls.pop("API (Swagger)")
        return urls

    def _check_ports(self, parts: list[Component]) -> None:
        busy = [
            f"{part.name} port {port}"
            for part in parts
            for port in [part.ready_port or urlparse(part.ready_url or "").port]
            if port and port_in_use(port)
        ]
        if busy:
            raise StartupError(
                f"already in use: {', '.join(busy)}. Stop what holds them (`make down` if it is "
                "this platform) or move them with MLOPS_* settings (see docs/configuration.md)."
            )

    def start(self, timeout: float = 180.0) -> None:
        check_python_path()
        scratch.prepare(self.settings)
        parts = self.components()
        self._check_ports(parts)
        leftovers.forget_earlier_runs(self.settings)
        ensure_dataset(self.settings)
        raise_open_files_limit()
        started = [self.supervisor.start(part) for part in parts]
        try:
            self.supervisor.wait_ready(started, timeout)
            self._wait_for_warm_trainer()
        except BaseException:
            self.supervisor.stop_all()
            raise

    def _wait_for_warm_trainer(self, timeout: float = 90.0) -> None:
        """Up means warm: the API starts the trainer with a Ray job of its own as it
        starts (MLOPS_WARM_UP_TRAINER); wait for that job, so the first training does
        not pay the trainer's start. A job that fails is logged, not fatal: trainings
        then start the trainer themselves."""
        settings = self.settings
        if not (settings.warm_trainer and settings.warm_up_trainer):
            return
        headers = auth_headers(settings.ray_token())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervisor.check_running()  # Ray's `start` may exit once ready
            warm_ups = self._warm_up_statuses(headers)
            if "SUCCEEDED" in warm_ups:
                return
            if warm_ups and all(status in ("FAILED", "STOPPED") for status in warm_ups):
                log.warning("the trainer's warm-up job failed: the first training starts it")
                return
            time.sleep(0.5)
        log.warning("the trainer was not warm after %g s: the first training waits for it", timeout)

    def _warm_up_statuses(self, headers: dict[str, str]) -> list[str]:
        """The statuses of the warm-up jobs Ray lists; none while its Jobs API does not
        answer (Ray's `start` may have exited: the caller checks)."""
        url = f"{self.settings.ray_address}/api/jobs/"
        try:
            listed = httpx.get(url, headers=headers, timeout=10).raise_for_status().json()
        except httpx.HTTPError as exc:
            log.debug("Ray's Jobs API does not answer: %s", exc)
            return []
        return [
            job["status"] for job in listed if (job.get("metadata") or {}).get("kind") == "warm-up"
        ]

    def stop(self) -> None:
        self.supervisor.stop_all()
