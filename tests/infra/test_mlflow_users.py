"""MLflow's users per role, set up as config/init.sh sets them up, tried on a real server.

A real MLflow runs the basic-auth app with the configuration init.sh writes (its users'
store moved to a temporary folder); `python -m mlops.clients.mlflow_users` gets the very
request init.sh pipes into the Ray head, pointed at this server. Then each role does
what the platform does, and what it must not do is refused by MLflow itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import free_port, run_async
from infra.init_harness import Harness, applied_secrets

from mlops.local import components
from mlops.local.supervisor import Supervisor
from mlops.settings.platform import PlatformSettings

pytestmark = [pytest.mark.platform]

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass
class Server:
    url: str
    request: dict  # what init.sh sends, pointed at this server

    def as_user(self, role: str | None, password: str | None = None) -> httpx.Client:
        auth = None
        if role:
            auth = (role, password or self.request["passwords"][role])
        return httpx.Client(base_url=self.url, auth=auth, timeout=30)


def _provision(request: dict) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops.clients.mlflow_users"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("mlflow-users")
    harness = Harness(root / "init")
    assert harness.run().returncode == 0
    auth = applied_secrets(harness)["mlflow", "mlflow-auth"]["basic_auth.ini"]
    auth = re.sub(
        r"^database_uri = .*$", f"database_uri = sqlite:///{root}/auth.db", auth, flags=re.M
    )
    (root / "basic_auth.ini").write_text(auth)
    call = next(c for c in harness.calls({"kubectl"}) if "mlops.clients.mlflow_users" in c["args"])

    port = free_port()
    settings = PlatformSettings(
        environment="development", data_dir=root, mlflow_tracking_uri=f"http://127.0.0.1:{port}"
    )
    component = components.mlflow(settings)
    component = dataclasses.replace(
        component,
        command=[*component.command, "--app-name", "basic-auth"],
        env={
            **component.env,
            "MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini"),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-" + "k" * 27,
        },
    )
    supervisor = Supervisor(root / "logs")
    running = supervisor.start(component)
    try:
        supervisor.wait_ready([running], timeout=90)
        request = {**json.loads(call["stdin"]), "tracking_uri": settings.mlflow_tracking_uri}
        provisioned = _provision(request)
        assert provisioned.returncode == 0, provisioned.stderr
        yield Server(settings.mlflow_tracking_uri, request)
    finally:
        supervisor.stop_all()


@dataclass
class Model:
    experiment_id: str
    run_id: str
    artifact: str
    name: str
    version: str


@pytest.fixture(scope="module")
def trained(server: Server) -> Model:
    """What a training does, as the trainer: a run, an artifact, a version, the alias."""
    unique = uuid.uuid4().hex[:8]
    with server.as_user("trainer") as trainer:
        experiment = trainer.post(f"{API}/experiments/create", json={"name": f"e-{unique}"})
        assert experiment.status_code == 200, experiment.text
        experiment_id = experiment.json()["experiment_id"]
        run = trainer.post(f"{API}/runs/create", json={"experiment_id": experiment_id})
        assert run.status_code == 200, run.text
        run_id = run.json()["run"]["info"]["run_id"]
        artifact = f"{experiment_id}/{run_id}/artifacts/model/model.skops"
        uploaded = trainer.put(f"{ARTIFACTS}/{artifact}", content=b"a model")
        assert uploaded.status_code == 200, uploaded.text
        name = f"m-{unique}"
        created = trainer.post(f"{API}/registered-models/create", json={"name": name})
        assert created.status_code == 200, created.text
        source = f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/model"
        version = trainer.post(
            f"{API}/model-versions/create", json={"name": name, "source": source, "run_id": run_id}
        )
        assert version.status_code == 200, version.text
        number = version.json()["model_version"]["version"]
        moved = trainer.post(
            f"{API}/registered-models/alias",
            json={"name": name, "alias": "champion", "version": number},
        )
        assert moved.status_code == 200, moved.text
    return Model(experiment_id, run_id, artifact, name, number)


def _reads(client: httpx.Client, model: Model) -> list[int]:
    return [
        client.get(f"{API}/runs/get", params={"run_id": model.run_id}).status_code,
        client.get(
            f"{API}/registered-models/alias", params={"name": model.name, "alias": "champion"}
        ).status_code,
        client.get(f"{ARTIFACTS}/{model.artifact}").status_code,
    ]


@pytest.mark.parametrize("role", ["trainer", "api", "serving"])
def test_every_role_reads_runs_aliases_and_artifacts(server: Server, trained: Model, role) -> None:
    with server.as_user(role) as client:
        assert _reads(client, trained) == [200, 200, 200]


def test_serving_reads_and_nothing_more(server: Server, trained: Model) -> None:
    with server.as_user("serving") as serving:
        alias = {"name": trained.name, "alias": "champion", "version": trained.version}
        tag = {"name": trained.name, "version": trained.version, "key": "k", "value": "v"}
        refused = [
            serving.post(f"{API}/registered-models/alias", json=alias),
            serving.post(f"{API}/model-versions/set-tag", json=tag),
            serving.post(f"{API}/runs/create", json={"experiment_id": trained.experiment_id}),
            serving.put(f"{ARTIFACTS}/{trained.artifact}", content=b"another model"),
        ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]


def test_the_api_moves_the_alias_and_tags_versions_but_writes_no_run(
    server: Server, trained: Model
) -> None:
    with server.as_user("api") as api:
        alias = {"name": trained.name, "alias": "champion", "version": trained.version}
        tag = {"name": trained.name, "version": trained.version, "key": "k", "value": "v"}
        allowed = [
            api.post(f"{API}/registered-models/alias", json=alias),
            api.post(f"{API}/model-versions/set-tag", json=tag),
        ]
        refused = [
            api.post(f"{API}/runs/create", json={"experiment_id": trained.experiment_id}),
            api.put(f"{ARTIFACTS}/{trained.artifact}", content=b"another model"),
            api.post(f"{API}/experiments/update", json={"experiment_id": trained.experiment_id,
                                                         "new_name": "renamed"}),
        ]  # fmt: skip
    assert [r.status_code for r in allowed] == [200, 200]
    assert [r.status_code for r in refused] == [403, 403, 403]


@pytest.mark.parametrize("role", ["trainer", "api", "serving"])
def test_no_role_manages_users(server: Server, role: str) -> None:
    with server.as_user(role) as client:
        made = client.post(f"{API}/users/create", json={"username": "x", "password": "y" * 16})
    assert made.status_code == 403


def test_without_a_login_nothing_answers(server: Server, trained: Model) -> None:
    with server.as_user(None) as anonymous:
        assert set(_reads(anonymous, trained)) == {401}
    with server.as_user("trainer", password="not-the-password") as wrong:
        assert set(_reads(wrong, trained)) == {401}


def test_setting_up_again_changes_a_password_and_keeps_the_grants(
    server: Server, trained: Model
) -> None:
    old = server.request["passwords"]["serving"]
    new = uuid.uuid4().hex
    again = _provision(
        {**server.request, "passwords": {**server.request["passwords"], "serving": new}}
    )
    assert again.returncode == 0, again.stderr
    try:
        with server.as_user("serving", password=old) as stale:
            assert set(_reads(stale, trained)) == {401}
        with server.as_user("serving", password=new) as serving:
            assert _reads(serving, trained) == [200, 200, 200]
    finally:
        assert _provision(server.request).returncode == 0


def test_a_bad_request_names_the_field_and_never_echoes_a_password() -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    result = _provision({"tracking_uri": "http://127.0.0.1:1", "admin_password": secret,
                         "passwords": {"owner": secret}})  # fmt: skip

    assert result.returncode == 2
    assert "passwords.owner" in result.stderr
    assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize("role", ["trainer", "api", "serving"])
def test_each_role_tells_a_missing_model_from_a_refusal(
    server: Server, trained: Model, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow answers 403, not 404, about a model that does not exist: before the first
    # training every champion lookup would otherwise fail (and the gate fail closed).
    from mlflow import MlflowClient

    from mlops.clients.mlflow_registry import MlflowRegistry
    from mlops.ml import promotion

    password = server.request["passwords"][role]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", role)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(server.url)
    assert promotion.alias_version(client, f"none-{uuid.uuid4().hex[:8]}", "champion") is None
    assert promotion.alias_version(client, trained.name, "no-such-alias") is None
    assert promotion.alias_version(client, trained.name, "champion") == trained.version

    async def read() -> list[str | None]:
        async with httpx.AsyncClient(timeout=30) as http:
            registry = MlflowRegistry(http, server.url, (role, password))
            return [
                await registry.alias_version(f"none-{uuid.uuid4().hex[:8]}", "champion"),
                await registry.alias_version(trained.name, "champion"),
            ]

    assert run_async(read()) == [None, trained.version]
