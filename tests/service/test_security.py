"""Who may call what, and how much: the API token, CORS, body size and admission limits."""

from __future__ import annotations

import os
import pickle
import pickletools
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from helpers import (
    API_TOKEN,
    REDIS_PASSWORD,
    api_client,
    component_process,
    free_port,
    ray_headers,
    wait_for_job,
)
from pydantic import ValidationError
from redis import Redis

from mlops.local.components import Component
from mlops.local.supervisor import Supervisor
from mlops.main import create_app
from mlops.settings.platform import PlatformSettings

WRITES = [
    ("POST", "/trigger_training", {"hyperparameters": {}}),
    ("POST", "/schedule_training", {"minutes": 60}),
    ("POST", "/watch_model", {"minutes": 60}),
    ("POST", "/watch_drift", {"minutes": 60}),
    ("POST", "/models/iris/versions/1/promote", {"reason": "x"}),
    ("POST", "/models/iris/rollback", {"reason": "x"}),
    ("DELETE", "/kill_scheduled_job/training-000000000000", None),
]
READS = ["/get_metrics", "/jobs", "/alerts?limit=1", "/scheduled_jobs", "/health", "/ready"]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "this endpoint needs the API token"), ("not-the-token", "wrong API token")],
)
def test_writes_without_the_right_token_get_401_and_change_nothing(
    api_url: str, method: str, path: str, body: dict | None, token: str | None, message: str
) -> None:
    with api_client(api_url, token=token) as client, api_client(api_url) as admin:
        before = admin.get("/jobs").json()["jobs"], admin.get("/scheduled_jobs").json()

        response = client.request(method, path, json=body)

        assert response.status_code == 401
        assert message in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
        assert (admin.get("/jobs").json()["jobs"], admin.get("/scheduled_jobs").json()) == before


def test_a_malformed_authorization_header_is_a_401_not_a_500(api_url: str) -> None:
    with httpx.Client(base_url=api_url) as client:
        for header in ("Basic dXNlcjpwYXNz", "Bearer", "Token abc", f"bearer {API_TOKEN}x"):
            response = client.post(
                "/watch_model", json={"minutes": 5}, headers={"Authorization": header}
            )
            assert response.status_code == 401, header


def test_writes_with_the_token_are_accepted(api) -> None:
    added = api.post("/watch_model", json={"minutes": 60})

    assert added.status_code == 201
    assert api.delete(f"/kill_scheduled_job/{added.json()['schedule_id']}").status_code == 200


@pytest.mark.parametrize("path", READS)
def test_reads_stay_open_by_default(api_url: str, path: str) -> None:
    assert httpx.get(f"{api_url}{path}", timeout=30).status_code == 200


def test_reads_need_the_token_when_configured(start_api) -> None:
    client, _ = start_api(redis_db=5, api_token_for_reads=True)

    anonymous = httpx.get(f"{client.base_url}/jobs")

    assert anonymous.status_code == 401
    assert client.get("/jobs").status_code == 200
    assert httpx.get(f"{client.base_url}/health").status_code == 200  # probes stay open


def test_cors_allows_the_listed_origins_only(api_url: str, settings: PlatformSettings) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{api_url}/trigger_training",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )

    allowed = preflight(settings.cors_origins[0])
    foreign = preflight("https://attacker.example")

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == settings.cors_origins[0]
    assert "access-control-allow-origin" not in foreign.headers
    assert "*" not in settings.cors_origins


def test_a_body_over_the_limit_gets_413_declared_or_streamed(api_url: str) -> None:
    big = b'{"input_data": [' + b"1.0," * 400_000 + b"1.0]}"

    def chunks():
        for start in range(0, len(big), 65_536):
            yield big[start : start + 65_536]

    with api_client(api_url) as client:
        declared = client.post(
            "/inference", content=big, headers={"Content-Type": "application/json"}
        )
        streamed = client.post(
            "/inference", content=chunks(), headers={"Content-Type": "application/json"}
        )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert "MLOPS_MAX_BODY_BYTES" in response.json()["detail"]


@pytest.mark.slow
def test_training_beyond_the_active_limit_gets_429_and_creates_nothing(start_api) -> None:
    client, _ = start_api(
        redis_db=6, max_active_trainings=1, experiment_name="limit-test", model_name="limit-test"
    )

    first = client.post("/trigger_training", json={"hyperparameters": {"n_estimators": 5}})
    second = client.post("/trigger_training", json={"hyperparameters": {"n_estimators": 5}})

    assert first.status_code == 202
    assert second.status_code == 429
    assert "MLOPS_MAX_ACTIVE_TRAININGS" in second.json()["detail"]
    assert second.headers["retry-after"]
    assert [j["job_id"] for j in client.get("/jobs").json()["jobs"]] == [first.json()["job_id"]]


def test_schedules_beyond_the_limit_get_429(start_api) -> None:
    client, _ = start_api(redis_db=7, max_schedules=1)

    first = client.post("/watch_model", json={"minutes": 60})
    second = client.post("/schedule_training", json={"minutes": 60})

    assert first.status_code == 201
    assert second.status_code == 429
    assert "kill_scheduled_job" in second.json()["detail"]
    client.delete(f"/kill_scheduled_job/{first.json()['schedule_id']}")


@pytest.mark.parametrize("token", [None, "short"])
def test_a_production_api_refuses_to_start_without_a_real_token(token: str | None) -> None:
    # A Ray job needs no token; every production process needs the signing key.
    settings = PlatformSettings(
        environment="production", api_token=token, model_signing_key="k" * 32
    )

    with pytest.raises(RuntimeError, match="MLOPS_API_TOKEN"):
        create_app(settings)


def test_production_refuses_a_wildcard_cors_origin() -> None:
    with pytest.raises(ValidationError, match="MLOPS_CORS_ORIGINS"):
        PlatformSettings(
            environment="production",
            api_token="x" * 32,
            cors_origins="*",
            model_signing_key="k" * 32,
        )


def test_cors_origins_read_from_a_comma_separated_variable(monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_CORS_ORIGINS", "https://a.example, https://b.example")

    assert PlatformSettings().cors_origins == ["https://a.example", "https://b.example"]


def _is_pickle(value: bytes) -> bool:
    """A complete pickle: protocol 2+ opens with PROTO; any protocol parses to STOP."""
    if value[:1] == b"\x80" and value[1:2] in {b"\x02", b"\x03", b"\x04", b"\x05"}:
        return True
    try:
        opcodes = list(pickletools.genops(value))
    except Exception:  # not a pickle: any parse error means so
        return False
    # A whole pickle ends with STOP as its last byte ("0.9667" parses as POP, STOP, …).
    last, _, position = opcodes[-1]
    return last.name == "STOP" and position == len(value) - 1 and len(opcodes) > 2


def _stored_values(redis: Redis, key: bytes) -> list[bytes]:
    kind = redis.type(key)
    if kind == b"string":
        return [redis.get(key) or b""]
    if kind == b"hash":
        return list(redis.hgetall(key).values())
    if kind == b"stream":
        return [v for _, fields in redis.xrange(key) for v in fields.values()]
    if kind == b"list":
        return list(redis.lrange(key, 0, -1))
    if kind in {b"set", b"zset"}:
        return list(redis.smembers(key)) if kind == b"set" else list(redis.zrange(key, 0, -1))
    return []


def test_nothing_the_platform_writes_to_redis_is_a_pickle(
    api: httpx.Client, settings: PlatformSettings
) -> None:
    """Whoever can write to Redis must not be able to run code in the API: every key
    in every database the tests' platforms used is read, and none holds a pickle."""
    schedule = api.post("/schedule_training", json={"minutes": 60}).json()["schedule_id"]
    api.post("/watch_model", json={"minutes": 60})
    api.post("/watch_drift", json={"minutes": 60})
    job = api.post("/trigger_training", json={"hyperparameters": {"n_estimators": 5}}).json()
    wait_for_job(api, job["job_id"])
    url = settings.redis_url.rsplit("/", 1)[0]
    found: list[str] = []
    keys = 0

    for db in range(16):
        redis = Redis.from_url(f"{url}/{db}", password=REDIS_PASSWORD)
        for key in redis.scan_iter(count=1000):
            keys += 1
            found += [key.decode() for value in _stored_values(redis, key) if _is_pickle(value)]
        redis.close()

    written = _all_keys(url)
    assert {"mlops:schedule-records", "mlops:alerts", f"mlops:job:{job['job_id']}"} <= written
    assert keys >= len(written)
    assert found == []
    assert _is_pickle(pickle.dumps({"a": 1})) and _is_pickle(pickle.dumps([1], protocol=0))
    api.delete(f"/kill_scheduled_job/{schedule}")


def _all_keys(url: str) -> set[str]:
    redis = Redis.from_url(f"{url}/0", password=REDIS_PASSWORD)
    try:
        return {key.decode() for key in redis.scan_iter(count=1000)}
    finally:
        redis.close()


def test_rays_jobs_and_serve_apis_refuse_callers_without_the_token(
    platform, settings: PlatformSettings
) -> None:
    """Ray's Jobs API runs whatever it is given (CVE-2023-48022, "ShadowRay"): the
    platform's Ray never answers it without the token, and the platform, which sends
    it, trains and serves (every other test here)."""
    jobs = f"{settings.ray_address}/api/jobs/"
    submission = {"entrypoint": "echo owned"}

    anonymous = httpx.post(jobs, json=submission)
    wrong = httpx.post(jobs, json=submission, headers={"Authorization": "Bearer guess"})
    serve = httpx.put(f"{settings.ray_address}/api/serve/applications/", json={})
    listed = httpx.get(jobs, headers=ray_headers())

    assert anonymous.status_code == 401 and wrong.status_code in {401, 403}
    assert serve.status_code == 401
    assert listed.status_code == 200
    assert all(job["entrypoint"] != "echo owned" for job in listed.json())


def test_secrets_reach_only_the_processes_that_use_them(
    platform, settings: PlatformSettings
) -> None:
    env = {running.component.name: running.component.env for running in platform.supervisor.running}
    ray_head = component_process(platform, "ray")

    assert "MLOPS_API_TOKEN" not in env["ray"] and "MLOPS_RAY_AUTH_TOKEN" not in env["ray"]
    assert env["ray"]["RAY_AUTH_MODE"] == "token"
    assert set(env["api"]) == {
        "MLOPS_API_TOKEN",
        "MLOPS_REDIS_USERNAME",
        "MLOPS_REDIS_PASSWORD",
        "MLOPS_RAY_AUTH_TOKEN",
        "MLOPS_MODEL_SIGNING_KEY",  # it checks seals before a promotion
        "MLOPS_S3_SECRET_ACCESS_KEY",  # it reads dataset headers (a model's columns)
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION",  # "false": not a secret, a switch
    }
    assert env["api"]["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    # Each signs in to Redis as its own user, never with the server's password.
    assert (env["api"]["MLOPS_REDIS_USERNAME"], env["ray"]["MLOPS_REDIS_USERNAME"]) == (
        "api",
        "ray",
    )
    redis_passwords = {env[name]["MLOPS_REDIS_PASSWORD"] for name in ("api", "ray")}
    assert len(redis_passwords) == 2 and REDIS_PASSWORD not in redis_passwords
    assert env["ray"]["MLOPS_MODEL_SIGNING_KEY"]  # the trainer seals, replicas check
    assert not any(key.startswith("MLOPS_") for key in env["mlflow"])  # MLflow: no key
    assert "MLOPS_API_TOKEN" not in ray_head.environ()
    assert REDIS_PASSWORD not in " ".join(
        " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
    )  # the Valkey password is in its config file (mode 600), not on a command line
    config = settings.data_dir / "valkey" / "valkey.conf"
    assert config.stat().st_mode & 0o777 == 0o600
    assert (settings.data_dir / "ray-token").stat().st_mode & 0o777 == 0o600


MLFLOW_ADMIN_PASSWORD = "test-mlflow-admin-6c1f"  # pragma: allowlist secret (test only)


@pytest.fixture()
def mlflow_with_auth(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server with its basic-auth app, as the cluster runs it."""
    port = free_port()
    config = tmp_path / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{tmp_path / 'auth.db'}\n"
        "admin_username = admin\n"
        f"admin_password = {MLFLOW_ADMIN_PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "a" * 32,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    url = f"http://127.0.0.1:{port}"
    supervisor = Supervisor(tmp_path / "logs", base_env=env)
    try:
        supervisor.wait_ready(
            [supervisor.start(Component("mlflow-auth", command, ready_url=f"{url}/health"))],
            timeout=90,
        )
        yield url
    finally:
        supervisor.stop_all()


def test_an_authenticated_mlflow_admits_the_platform_and_refuses_strangers(
    start_api, mlflow_with_auth: str
) -> None:
    url = mlflow_with_auth
    model = {"model_name": f"auth_{uuid.uuid4().hex[:6]}", "redis_db": 11}
    platform_api, _ = start_api(
        mlflow_tracking_uri=url,
        mlflow_username="admin",
        mlflow_password=MLFLOW_ADMIN_PASSWORD,
        **model,
    )
    stranger_api, _ = start_api(mlflow_tracking_uri=url, **model)

    metrics = platform_api.get("/get_metrics")
    versions = platform_api.get("/models/iris/versions")
    move = httpx.post(
        f"{url}/api/2.0/mlflow/registered-models/alias",
        json={"name": model["model_name"], "alias": "champion", "version": "1"},
    )
    refused = stranger_api.get("/get_metrics")

    assert metrics.status_code == 200 and versions.status_code == 200
    assert move.status_code == 401  # nobody without credentials moves the champion
    assert refused.status_code == 503
    assert "MLOPS_MLFLOW_USERNAME" in refused.json()["detail"]


def test_rays_redis_user_cannot_touch_the_schedules_or_run_admin_commands(
    platform, settings: PlatformSettings
) -> None:
    env = {running.component.name: running.component.env for running in platform.supervisor.running}
    as_ray = redis.Redis.from_url(
        settings.redis_url,
        username=env["ray"]["MLOPS_REDIS_USERNAME"],
        password=env["ray"]["MLOPS_REDIS_PASSWORD"],
    )

    assert as_ray.exists("mlops:alerts") in (0, 1)  # signed in; its own keys are readable
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_ray.hgetall("mlops:schedule-records")  # the API carries schedules out
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_ray.set("mlops:serve-deploy", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_ray.config_set("appendonly", "no")
