"""config/init.sh's logic, run for real against stand-ins for kind, kubectl, helm and docker.

The stand-ins (stub_tools.py) record every call and remember what they "created", on a
PATH that holds them and a few system tools only. The script runs from a copy of the
repository's deploy files, so the tests never touch the real outputs/.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from helpers import free_port
from infra import kube
from infra.init_harness import Harness, applied_secrets, call_index

from mlops.clients.redis import users as redis_users
from mlops.local.components import find_redis_server


@dataclass(frozen=True)
class FullRun:
    harness: Harness
    result: subprocess.CompletedProcess[str]


# The tests that read the one shared run go to one test worker, so it runs once.
SHARED_RUN = pytest.mark.xdist_group("init-sh-full-run")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> FullRun:
    """One plain `./config/init.sh` on a fresh machine, shared by the tests that only
    read what it did (a run costs seconds: each stand-in call starts Python)."""
    harness = Harness(tmp_path_factory.mktemp("full-run"))
    return FullRun(harness, harness.run())


@SHARED_RUN
def test_a_full_run_issues_every_step_in_order(full_run: FullRun) -> None:
    harness, result = full_run.harness, full_run.result

    assert result.returncode == 0, result.stderr
    commands = harness.commands()
    order = [
        call_index(commands, "docker info"),
        call_index(commands, "kind create cluster", "--name mlops", "kind-config.yaml"),
        call_index(commands, "kubectl", "apply --kustomize", "manifests/cluster"),
        call_index(commands, "kubectl", "apply -f -"),
        call_index(commands, "docker build", "fastapi/Dockerfile"),
        call_index(commands, "kind load docker-image"),
        call_index(commands, "helm repo add argo"),
        call_index(commands, "helm upgrade --install minio minio/minio --version 5.4.0"),
        call_index(
            commands, "helm upgrade --install mlflow community-charts/mlflow --version 1.11.5"
        ),
        call_index(commands, "helm upgrade --install redis oci://", "--version 23.1.1"),
        call_index(commands, "helm upgrade --install kuberay-operator", "--version 1.7.0"),
        call_index(commands, "helm upgrade --install ray kuberay/ray-cluster", "--version 1.7.0"),
        call_index(commands, "kubectl", "wait raycluster/mlops-ray", "HeadPodReady"),
        call_index(commands, "kubectl", "exec", "python -m mlops.clients.mlflow_users"),
        call_index(commands, "kubectl", "exec", "python -m mlops.ml.seed"),
        call_index(commands, "helm upgrade --install argocd argo/argo-cd --version 10.1.1"),
        call_index(commands, "kubectl", "wait crd/appprojects.argoproj.io"),
        call_index(commands, "kubectl", "wait deployment/mlops-api", "--for=condition=Available"),
    ]
    assert order == sorted(order), "\n".join(commands)
    for command in commands:
        if command.startswith("helm upgrade"):
            assert "--wait --timeout 10m" in command and "--values" in command
            assert "--kube-context kind-mlops" in command
    applied = [c["args"] for c in harness.calls({"kubectl-applied"})]
    argocd = applied[applied.index(["AppProject", "mlops"]) :]
    assert argocd[:3] == [
        ["AppProject", "mlops"], ["Application", "mlops-api"], ["Application", "mlops-dashboard"]
    ]  # fmt: skip


@SHARED_RUN
def test_the_dataset_goes_to_the_uri_the_api_reads(full_run: FullRun) -> None:
    harness = full_run.harness

    seed = harness.commands()[call_index(harness.commands(), "python -m mlops.ml.seed")]
    assert "pod/mlops-ray-head-x7k2p" in seed
    assert "MLOPS_DATASET_URI=s3://mlops/datasets/iris.csv" in seed
    assert "MLOPS_S3_ENDPOINT_URL=http://minio.minio.svc.cluster.local:9000" in seed
    # Ray's own key is read-only: the seed writes as the datasets user, its key on stdin.
    assert seed.endswith("python -m mlops.ml.seed --s3-credentials-from-stdin")
    credentials = (harness.repo / "outputs" / "credentials.txt").read_text()
    key = next(line for line in credentials.splitlines() if "datasets.password" in line)
    exec_call = next(c for c in harness.calls({"kubectl"}) if "mlops.ml.seed" in c["args"])
    assert exec_call["stdin"] == f"datasets\n{key.split('=', 1)[1]}\n"
    assert key.split("=", 1)[1] not in seed


@SHARED_RUN
def test_secrets_are_random_kept_private_and_written_with_mode_600(full_run: FullRun) -> None:
    harness, result = full_run.harness, full_run.result

    credentials = harness.repo / "outputs" / "credentials.txt"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    values = dict(
        line.split("=", 1) for line in credentials.read_text().splitlines() if "=" in line
    )
    assert len(values["minio.password"]) == 32 and values["minio.password"].isalnum()
    assert values["redis.password"] != values["minio.password"]
    assert values["argocd.password"] == "argocd-generated"
    assert values["kubernetes-dashboard.token"] == "token-from-kubernetes"
    everything = result.stdout + result.stderr + "\n".join(harness.commands())
    assert values["minio.password"] not in everything
    assert values["redis.password"] not in everything
    by_name = applied_secrets(harness)
    assert set(by_name) == {
        ("minio", "minio-root"),
        ("minio", "minio-users"),
        ("mlflow", "mlflow-s3"),
        ("mlflow", "mlflow-auth"),
        ("db", "redis-auth"),
        ("db", "redis-users"),
        ("fastapi", "mlops-secrets"),
        ("kuberay", "mlops-secrets"),
        ("kuberay", "mlops-serving"),
    }
    by_namespace = {ns: data for (ns, name), data in by_name.items() if name == "mlops-secrets"}
    assert "MLOPS_API_TOKEN" in by_namespace["fastapi"]
    assert "MLOPS_API_TOKEN" not in by_namespace["kuberay"]
    # MinIO's root login is MinIO's alone; MLflow and the jobs have users of their own.
    root_password = by_name["minio", "minio-root"]["rootPassword"]
    users = by_name["minio", "minio-users"]
    assert len(set(users.values()) | {root_password}) == 5
    everyone_else = [d for key, d in by_name.items() if key[0] != "minio"]
    assert not any(root_password in value for data in everyone_else for value in data.values())
    assert by_name["mlflow", "mlflow-s3"] == {
        "AWS_ACCESS_KEY_ID": "mlflow",
        "AWS_SECRET_ACCESS_KEY": users["mlflow"],
    }
    assert by_namespace["kuberay"]["MLOPS_S3_ACCESS_KEY_ID"] == "training"
    assert by_namespace["kuberay"]["MLOPS_S3_SECRET_ACCESS_KEY"] == users["training"]
    # The API reads dataset headers as a read-only user of its own.
    assert by_namespace["fastapi"]["MLOPS_S3_ACCESS_KEY_ID"] == "api"
    assert by_namespace["fastapi"]["MLOPS_S3_SECRET_ACCESS_KEY"] == users["api"]
    # MLflow's admin, in its auth config file, is for people: the platform signs in as
    # one user per role (test_mlflow_users_are_set_up_with_their_passwords_on_stdin).
    auth_config = by_name["mlflow", "mlflow-auth"]["basic_auth.ini"]
    assert "admin_username = admin" in auth_config
    assert f"admin_password = {values['mlflow.password']}" in auth_config
    assert "default_permission = NO_PERMISSIONS" in auth_config
    # One Ray token: Ray's pods read it as RAY_AUTH_TOKEN, the API sends it.
    ray_token = by_namespace["kuberay"]["RAY_AUTH_TOKEN"]
    assert by_namespace["fastapi"]["MLOPS_RAY_AUTH_TOKEN"] == ray_token
    # One signing key: the trainer seals with it, the API and replicas check with it.
    signing_key = by_namespace["fastapi"]["MLOPS_MODEL_SIGNING_KEY"]
    assert by_namespace["kuberay"]["MLOPS_MODEL_SIGNING_KEY"] == signing_key
    assert len(signing_key) >= 32
    assert signing_key not in by_name["mlflow", "mlflow-auth"]["basic_auth.ini"]
    # The serving nodes hold what a replica needs: no dataset key, and MLflow's reader.
    serving = by_name["kuberay", "mlops-serving"]
    assert not any(key.startswith("MLOPS_S3_") for key in serving)
    assert serving["MLFLOW_TRACKING_USERNAME"] == "serving"
    assert serving["RAY_AUTH_TOKEN"] == ray_token
    assert serving["MLOPS_MODEL_SIGNING_KEY"] == signing_key
    assert by_namespace["kuberay"]["MLFLOW_TRACKING_USERNAME"] == "trainer"
    assert len(values["api.token"]) == 32 and values["api.token"] not in everything
    assert "localhost:8888" in (harness.repo / "outputs" / "urls.txt").read_text()


@SHARED_RUN
def test_mlflow_users_are_set_up_with_their_passwords_on_stdin(full_run: FullRun) -> None:
    harness = full_run.harness
    by_name = applied_secrets(harness)
    call = next(c for c in harness.calls({"kubectl"}) if "mlops.clients.mlflow_users" in c["args"])
    request = json.loads(call["stdin"])

    assert call["args"][-3:] == ["python", "-m", "mlops.clients.mlflow_users"]
    assert "pod/mlops-ray-head-x7k2p" in call["args"]
    assert request["tracking_uri"] == kube.api_settings()["MLOPS_MLFLOW_TRACKING_URI"]
    assert request["admin_password"] == by_name["mlflow", "mlflow-auth"]["admin-password"]
    # Each role's password is the one its holder signs in with, and all differ.
    assert request["passwords"] == {
        "api": by_name["fastapi", "mlops-secrets"]["MLOPS_MLFLOW_PASSWORD"],
        "trainer": by_name["kuberay", "mlops-secrets"]["MLFLOW_TRACKING_PASSWORD"],
        "serving": by_name["kuberay", "mlops-serving"]["MLFLOW_TRACKING_PASSWORD"],
    }
    assert len({*request["passwords"].values(), request["admin_password"]}) == 4
    assert kube.api_settings()["MLOPS_MLFLOW_USERNAME"] == "api"
    assert not any(request["admin_password"] in arg for arg in call["args"])


@SHARED_RUN
def test_the_images_built_are_the_ones_the_kustomizations_deploy(full_run: FullRun) -> None:
    harness = full_run.harness

    load = harness.commands()[call_index(harness.commands(), "kind load docker-image")]
    ray = harness.commands()[call_index(harness.commands(), "install ray kuberay/ray-cluster")]
    assert "ghcr.io/mlops-platform/mlops-api:0.1.0" in load
    assert "ghcr.io/mlops-platform/mlops-dashboard:0.1.0" in load
    assert "image.repository=ghcr.io/mlops-platform/mlops-api" in ray
    assert "image.tag=0.1.0" in ray


@SHARED_RUN
def test_each_component_signs_in_to_redis_as_its_own_user(
    full_run: FullRun, tmp_path: Path
) -> None:
    secrets = applied_secrets(full_run.harness)
    passwords = secrets["db", "redis-auth"]
    acl_file = secrets["db", "redis-users"]["users.acl"]

    # The API's and Ray's Secrets hold their own user's password, not the server's.
    assert secrets["fastapi", "mlops-secrets"]["MLOPS_REDIS_PASSWORD"] == passwords["api"]
    assert secrets["kuberay", "mlops-secrets"]["MLOPS_REDIS_PASSWORD"] == passwords["ray"]
    assert len({passwords["password"], passwords["api"], passwords["ray"]}) == 3
    # The file's rules are the ones the package defines for each user.
    lines = {line.split()[1]: line.split(" ", 4) for line in acl_file.splitlines()}
    assert lines["default"][2:] == ["on", f">{passwords['password']}", "~* &* +@all"]
    for user in redis_users.USERS:
        _, name, on, password, rules = lines.pop(user.name)
        assert (on, password) == ("on", f">{passwords[user.name]}")
        assert rules == f"{user.keys} {user.channels} {user.commands}"
    assert set(lines) == {"default"}

    # Loaded as the chart's server loads it (requirepass beside the ACL file).
    (tmp_path / "users.acl").write_text(acl_file)
    port = free_port()
    server = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--save", "", "--dir", str(tmp_path),
         "--requirepass", passwords["password"], "--aclfile", str(tmp_path / "users.acl")],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_port(port)
        as_api = redis.Redis(port=port, username="api", password=passwords["api"])
        as_ray = redis.Redis(port=port, username="ray", password=passwords["ray"])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()  # no password: the default user keeps its own
        assert redis.Redis(port=port, password=passwords["password"]).ping()
        as_api.hset("mlops:schedule-records", "s", "{}")
        as_ray.hset("mlops:job:1", "status", "running")
        as_ray.xadd("mlops:alerts", {"alert": "{}"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_ray.hset("mlops:schedule-records", "s", "{}")
        for client in (as_api, as_ray):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.config_get("requirepass")
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.flushall()
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"nothing listens on port {port}")
