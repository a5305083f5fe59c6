"""The cluster's wiring rehearsed on one machine, with real servers in network namespaces.

No Kubernetes runs here, so each of the cluster's namespaces becomes a network namespace
(netns.py) whose hosts file resolves the in-cluster names of manifests/api/configmap.yaml,
and each process gets exactly the environment the rendered files give its pod: the image's
variables (fastapi/Dockerfile), the ConfigMap, the Deployment's and the Ray chart values'
variables, and the Secrets config/init.sh writes (run here with stand-in tools). Then the
original design's user: a training through the API, `python fastapi/serve.py` run where
`kubectl exec` would run it, an inference with the original payload; then an operator's
promotion, which the API makes as MLflow's `api` user and the replicas follow.

- `mlflow`: MLflow with the allowed hosts its chart renders from helm-values/mlflow.yaml
  and the basic-auth app as init.sh configures it, on the Service's port (80).
- `db`: Valkey with the password and the ACL file of init.sh's Secrets.
- `minio`: an S3 server (moto's) standing in for MinIO; init.sh's seed puts iris there.
- `kuberay`: a Ray node that is the head and the worker group in one (so it offers the
  trainer resource), with their Secret; `ray-serving`: a node of the serving group, with
  its own Secret. Both with the chart values' variables and resources. MLflow's users
  per role are set up from the head as init.sh does it, and each signs in as its own.
- `fastapi`: the API, as the Deployment runs it.

What differs from the cluster: MLflow keeps artifacts on its disk instead of proxying them
to MinIO; no NetworkPolicies (kind's network enforces those; here namespaces reach each
other freely). Needs root, for `ip netns`; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import yaml
from helpers import s3_answers, s3_client, wait_for, wait_for_job
from infra import kube, netns
from infra.init_harness import Harness, applied_secrets

from mlops.local.components import Component, find_redis_server
from mlops.local.supervisor import Supervisor

pytestmark = [pytest.mark.platform, pytest.mark.slow]

if reason := netns.unavailable():
    pytest.skip(reason, allow_module_level=True)

ORIGINAL_TRAINING = {"hyperparameters": {"n_estimators": 100}}
ORIGINAL_INFERENCE = {"input_data": [0.1, 1.2, 2.3, 2.2]}


# A Ray node given SIGTERM drains for up to 30 s, as a pod being replaced should; at the
# rehearsal's end there is nothing to drain to.
_NO_DRAIN = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


def _deployment_env() -> dict[str, str]:
    deployment = next(d for d in kube.kustomize("api") if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _image() -> tuple[dict[str, str], list[str]]:
    """The API image's ENV variables and its CMD."""
    text = (kube.ROOT / "fastapi" / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        env |= dict(pair.split("=", 1) for pair in shlex.split(line))
    command = json.loads(re.findall(r"^CMD (.+)$", text, re.M)[-1])
    return env, command


def _ray_values() -> dict:
    return yaml.safe_load((kube.ROOT / "helm-values" / "ray-cluster.yaml").read_text())


def _ray_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in _ray_values()["common"]["containerEnv"]}


def _offered(group: dict) -> str:
    """The custom resources a worker group's nodes start with (its rayStartParams)."""
    return str(json.loads(group["rayStartParams"]["resources"]))


def _served_by(url: str) -> tuple[str, str, int]:
    """(in-cluster name, its Kubernetes namespace, port) of a Service URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = {"http": 80, "https": 443, "redis": 6379}[parts.scheme]
    return host, host.split(".")[1], parts.port or default


@dataclass
class Cluster:
    network: netns.Network
    supervisor: Supervisor
    api_url: str
    api_env: dict[str, str]
    api_token: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("rehearsal")
    harness = Harness(root / "init")
    ran = harness.run()
    assert ran.returncode == 0, ran.stderr
    secrets = applied_secrets(harness)
    config = kube.api_settings()
    services = {
        key: _served_by(config[key])
        for key in (
            "MLOPS_MLFLOW_TRACKING_URI",
            "MLOPS_REDIS_URL",
            "MLOPS_RAY_ADDRESS",
            "MLOPS_S3_ENDPOINT_URL",
        )
    }
    network = netns.Network(
        names=["mlflow", "db", "minio", "kuberay", "ray-serving", "fastapi"],
        hosts={host: namespace for host, namespace, _ in services.values()},
    )
    base = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(root),
        "LANG": "C.UTF-8",
    }
    supervisor = Supervisor(root / "logs", base_env=base)
    pods_tmp = Path(tempfile.mkdtemp(prefix="rh-"))  # short: HAProxy's sockets go there
    network.create()
    try:
        image_env, api_command = _image()
        _start_mlflow(supervisor, network, root, secrets, services["MLOPS_MLFLOW_TRACKING_URI"][2])
        _start_valkey(supervisor, network, root, secrets, services["MLOPS_REDIS_URL"][2])
        _start_s3(network, services["MLOPS_S3_ENDPOINT_URL"][2], supervisor)
        ray_env = {
            **base,
            **image_env,
            **_ray_env(),
            **secrets["kuberay", "mlops-secrets"],
            **_own_tmp(pods_tmp / "head"),
            **_NO_DRAIN,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        _in_ray_head(network, harness, ray_env, "mlops.clients.mlflow_users")
        _in_ray_head(network, harness, ray_env, "mlops.ml.seed")
        _start_ray(supervisor, network, ray_env, services["MLOPS_RAY_ADDRESS"][2])
        serving_env = {
            **base,
            **image_env,
            **_ray_env(),
            **secrets["kuberay", "mlops-serving"],
            **_own_tmp(pods_tmp / "serving"),
            **_NO_DRAIN,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        _start_ray_serving(supervisor, network, serving_env)
        api_env = {
            **base,
            **image_env,
            **config,
            **secrets["fastapi", "mlops-secrets"],
            **_deployment_env(),
        }
        api = Component("api", network.command("fastapi", api_command), env=api_env)
        supervisor.start(api)
        api_url = f"http://{network.addresses['fastapi']}:8888"
        wait_for(lambda: _answers(f"{api_url}/health"), timeout=120, what="the API")
        yield Cluster(network, supervisor, api_url, api_env, api_env["MLOPS_API_TOKEN"])
    finally:
        supervisor.stop_all()
        network.delete()
        shutil.rmtree(pods_tmp, ignore_errors=True)


def _own_tmp(folder: Path) -> dict[str, str]:
    """The variables that move a Ray pod's files from /tmp (Ray's sessions, Serve's
    HAProxy, its processes' temporary files) to `folder`. A pod has a /tmp of its own;
    here every pod shares the machine's, and what Ray leaves there would outlive the
    rehearsal."""
    folder.mkdir()
    return {
        "RAY_TMPDIR": str(folder),
        "TMPDIR": str(folder),  # the Ray dashboard's forkserver leaves its socket there
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
    }


def _answers(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=2).is_success
    except httpx.HTTPError:
        return False


def _start_mlflow(supervisor, network, root: Path, secrets, port: int) -> None:
    """MLflow as its chart runs it: the allowed hosts rendered from our values, the
    basic-auth app with init.sh's configuration (its users' store moved under `root`)."""
    values = yaml.safe_load((kube.ROOT / "helm-values" / "mlflow.yaml").read_text())
    auth = secrets["mlflow", "mlflow-auth"]["basic_auth.ini"]
    auth = re.sub(
        r"^database_uri = .*$", f"database_uri = sqlite:///{root}/auth.db", auth, flags=re.M
    )
    (root / "basic_auth.ini").write_text(auth)
    command = [sys.executable, "-m", "mlflow", "server", "--host", "0.0.0.0", "--port", str(port)]
    command += ["--app-name", values["extraArgs"]["appName"], "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--serve-artifacts"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    env = {
        "MLFLOW_SERVER_ALLOWED_HOSTS": kube.chart_allowed_hosts(values),
        "MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "rehearsal-" + "k" * 22,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    supervisor.start(Component("mlflow", network.command("mlflow", command), env=env))
    url = f"http://{network.addresses['mlflow']}:{port}/health"
    wait_for(lambda: _answers(url), timeout=120, what="MLflow")


def _start_valkey(supervisor, network, root: Path, secrets, port: int) -> None:
    """Valkey as the chart's Redis runs: the server's password and init.sh's ACL file."""
    (root / "users.acl").write_text(secrets["db", "redis-users"]["users.acl"])
    password = secrets["db", "redis-auth"]["password"]
    command = [find_redis_server(), "--port", str(port), "--bind", "0.0.0.0", "--save", ""]
    command += ["--dir", str(root), "--aclfile", str(root / "users.acl")]
    command += ["--requirepass", password]  # where the chart's start script puts it
    supervisor.start(Component("redis", network.command("db", command)))
    address = network.addresses["db"]
    wait_for(lambda: _redis_answers(address, port, password), timeout=30, what="Redis")


def _redis_answers(address: str, port: int, password: str) -> bool:
    try:
        return bool(redis.Redis(host=address, port=port, password=password).ping())
    except redis.RedisError:
        return False


def _start_s3(network, port: int, supervisor) -> None:
    command = [sys.executable, "-m", "moto.server", "-H", "0.0.0.0", "-p", str(port)]
    supervisor.start(Component("minio", network.command("minio", command)))
    client = s3_client(f"http://{network.addresses['minio']}:{port}")
    wait_for(lambda: s3_answers(client), timeout=60, what="the S3 server")
    client.create_bucket(Bucket="mlops")  # the MinIO chart's `buckets`


def _in_ray_head(network, harness: Harness, ray_env: dict[str, str], module: str) -> None:
    """What init.sh runs in the Ray head (`kubectl exec`): the same command, the same stdin."""
    call = next(c for c in harness.calls({"kubectl"}) if module in " ".join(c["args"]))
    command = call["args"][call["args"].index("--") + 1 :]
    ran = subprocess.run(
        network.command("kuberay", command),
        input=call["stdin"],
        env=ray_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr


def _start_ray(supervisor, network, ray_env: dict[str, str], dashboard_port: int) -> None:
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block"]
    command += ["--node-ip-address", network.addresses["kuberay"], "--dashboard-host", "0.0.0.0"]
    command += ["--dashboard-port", str(dashboard_port), "--num-cpus", "2"]
    command += ["--resources", _offered(_ray_values()["worker"]), "--disable-usage-stats"]
    supervisor.start(Component("ray", network.command("kuberay", command), env=ray_env))
    url = f"http://{network.addresses['kuberay']}:{dashboard_port}/api/version"
    headers = {"Authorization": f"Bearer {ray_env['RAY_AUTH_TOKEN']}"}
    wait_for(lambda: _answers(url, headers), timeout=180, what="Ray's dashboard")


def _start_ray_serving(supervisor, network, env: dict[str, str]) -> None:
    """A node of the serving group, joined to the head by its address, as KubeRay does."""
    group = _ray_values()["additionalWorkerGroups"]["serving"]
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block"]
    command += ["--address", f"{network.addresses['kuberay']}:6379"]
    command += ["--node-ip-address", network.addresses["ray-serving"], "--num-cpus", "1"]
    command += ["--resources", _offered(group), "--disable-usage-stats"]
    supervisor.start(Component("ray-serving", network.command("ray-serving", command), env=env))


def test_the_api_reaches_every_server_by_its_in_cluster_name(cluster: Cluster) -> None:
    # /ready reads MLflow's registry (not /health), Redis and Ray: a 403 from MLflow's
    # host check, a refused Redis user or a wrong token would each make it 503.
    ready = wait_for(
        lambda: (r := httpx.get(f"{cluster.api_url}/ready", timeout=10)).is_success and r,
        timeout=120,
        what="the API's readiness",
    )

    assert ready.json()["ready"] is True, ready.text


def test_the_original_users_path_works_in_the_rehearsed_cluster(cluster: Cluster) -> None:
    api = httpx.Client(
        base_url=cluster.api_url,
        headers={"Authorization": f"Bearer {cluster.api_token}"},
        timeout=30,
    )
    accepted = api.post("/trigger_training", json=ORIGINAL_TRAINING)
    assert accepted.status_code == 202, accepted.text

    job = wait_for_job(api, accepted.json()["job_id"], timeout=300)
    assert job["status"] == "succeeded", job
    assert job["model_version"]

    # What `kubectl exec -it <api-pod> -n fastapi -- python /var/task/fastapi/serve.py` runs.
    served = subprocess.run(
        cluster.network.command("fastapi", ["python", str(kube.ROOT / "fastapi" / "serve.py")]),
        env=cluster.api_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert served.returncode == 0, served.stdout + served.stderr

    answer = wait_for(
        lambda: (r := api.post("/inference", json=ORIGINAL_INFERENCE)).status_code == 200 and r,
        timeout=120,
        what="an answer to the original inference payload",
    )
    assert answer.json()["prediction"] is not None
    assert answer.json()["model_version"] == job["model_version"]

    # An operator's promotion: the API moves the alias as MLflow's `api` user (a second
    # training as `trainer`), and the replicas, as `serving`, load the version it names.
    second = wait_for_job(api, api.post("/trigger_training", json={}).json()["job_id"], timeout=300)
    assert second["status"] == "succeeded", second
    versions = {job["model_version"], second["model_version"]}
    champion = api.get("/get_metrics").json()["champion_version"]
    (other,) = versions - {champion}
    promoted = api.post(f"/models/iris/versions/{other}/promote", json={"reason": "rehearsal"})
    assert promoted.status_code == 200, promoted.text
    wait_for(
        lambda: (
            api.post("/inference", json=ORIGINAL_INFERENCE).json().get("model_version") == other
        ),
        timeout=120,
        what=f"the replicas to serve version {other}",
    )
