"""helm-values/: one file per release init.sh installs, overrides only, no secrets.

That every key exists in the pinned chart was checked against each chart's values.yaml,
values.schema.json and templates when the file was written; upstream files are not
vendored here. These tests hold what must stay true as the files change.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from infra import kube

from mlops.clients.redis import users as redis_users
from mlops.contracts.placement import SERVING_RESOURCE, TRAINER_RESOURCE
from mlops.settings.platform import PlatformSettings

# values file -> (chart name in its header, versions.env key of its pinned version)
CHARTS = {
    "argo-cd": ("argo-cd", "ARGOCD_CHART_VERSION"),
    "kuberay-operator": ("kuberay-operator", "KUBERAY_OPERATOR_CHART_VERSION"),
    "ray-cluster": ("ray-cluster", "RAY_CLUSTER_CHART_VERSION"),
    "minio": ("minio", "MINIO_CHART_VERSION"),
    "mlflow": ("mlflow", "MLFLOW_CHART_VERSION"),
    "redis": ("redis", "REDIS_CHART_VERSION"),
}


def _values(name: str) -> dict[str, Any]:
    return yaml.safe_load((kube.ROOT / "helm-values" / f"{name}.yaml").read_text())


def _leaves(tree: Any, path: str = ""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, tree


def test_each_file_names_its_chart_repository_and_pinned_version() -> None:
    files = {p.stem for p in (kube.ROOT / "helm-values").glob("*.yaml")}
    versions = kube.versions()

    assert files == set(CHARTS)
    for name, (chart, version_key) in CHARTS.items():
        header = (kube.ROOT / "helm-values" / f"{name}.yaml").read_text().splitlines()[0]
        assert header.startswith(f"# Chart: {chart} {versions[version_key]} from "), header
        assert re.search(r"(https|oci)://\S+", header), header


def test_init_sh_installs_each_file_with_its_pinned_version() -> None:
    script = (kube.ROOT / "config" / "init.sh").read_text()

    for name, (_, version_key) in CHARTS.items():
        install = re.search(
            rf"helm_release \S+ \S+ \"\$\{{{version_key}\}}\" \S+ {name}\.yaml", script
        )
        assert install, f"init.sh does not install helm-values/{name}.yaml at {version_key}"


def test_no_values_file_holds_a_secret() -> None:
    for name in CHARTS:
        for path, value in _leaves(_values(name)):
            if re.search(r"(password|(?<!existing)secretKey|token|rootUser)$", path, re.I):
                assert value in ("", None), f"{name}: {path} holds a literal"


def test_credentials_come_from_the_secrets_init_sh_generates() -> None:
    script = (kube.ROOT / "config" / "init.sh").read_text()

    assert _values("minio")["existingSecret"] == "minio-root"
    assert _values("mlflow")["artifactRoot"]["s3"]["existingSecret"]["name"] == "mlflow-s3"
    assert _values("redis")["auth"]["existingSecret"] == "redis-auth"
    for secret in ("minio minio-root", "minio minio-users", "mlflow mlflow-s3", "db redis-auth"):
        assert f"apply_secret {secret} " in script


def test_each_service_has_its_own_minio_user_limited_to_its_prefix() -> None:
    values = _values("minio")
    script = (kube.ROOT / "config" / "init.sh").read_text()
    policies = {p["name"]: p["statements"] for p in values["policies"]}
    users = {u["accessKey"]: u for u in values["users"]}

    assert set(users) == {"mlflow", "training", "api", "datasets"}
    for key, user in users.items():
        assert user["existingSecret"] == "minio-users" and user["existingSecretKey"] == key
        assert f'"{key}=${{MINIO_' in script, f"init.sh does not generate {key}'s key"
        assert "secretKey" not in user
    prefix = {
        "mlflow": "mlops/mlflow/",
        "training": "mlops/datasets/",
        "api": "mlops/datasets/",
        "datasets": "mlops/datasets/",
    }
    for key, user in users.items():
        for statement in policies[user["policy"]]:
            for resource in statement["resources"]:
                arn = resource.removeprefix("arn:aws:s3:::")
                if arn == "mlops":  # the bucket itself: listing, only under the prefix
                    condition = statement["conditions"][0]["StringLike"]
                    assert f'"{prefix[key].removeprefix("mlops/")}*"' in condition, key
                else:
                    assert arn == prefix[key] + "*", (key, arn)
    for reader in ("training", "api"):
        read_only = {a for s in policies[users[reader]["policy"]] for a in s["actions"]}
        assert not any(a.startswith(("s3:Put", "s3:Delete")) for a in read_only), reader


def test_mlflow_requires_a_login_configured_from_init_shs_secret() -> None:
    values = _values("mlflow")
    script = (kube.ROOT / "config" / "init.sh").read_text()
    mounts = {m["name"]: m["mountPath"] for m in values["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in values["extraVolumes"]}

    assert values["extraArgs"]["appName"] == "basic-auth"
    config_path = values["extraEnvVars"]["MLFLOW_AUTH_CONFIG_PATH"]
    folder, filename = config_path.rsplit("/", 1)
    assert mounts["mlflow-auth"] == folder
    assert volumes["mlflow-auth"]["secret"]["secretName"] == "mlflow-auth"
    assert f'apply_secret mlflow mlflow-auth "{filename}=' in script
    # The chart's own auth would add an init container with no resources.
    assert not values.get("auth", {}).get("enabled", False)
    # The users' store lives on the data volume, so it survives a restart.
    assert "database_uri = sqlite:////mlflow/data/" in script
    assert "default_permission = NO_PERMISSIONS" in script


def test_the_ray_cluster_runs_our_image_with_guaranteed_resources_and_haproxy() -> None:
    values = _values("ray-cluster")
    script = (kube.ROOT / "config" / "init.sh").read_text()

    groups = {**values, **values["additionalWorkerGroups"]}
    for group, secret in (("head", "mlops-secrets"), ("worker", "mlops-secrets"),
                          ("serving", "mlops-serving")):  # fmt: skip
        resources = groups[group]["resources"]
        assert resources["requests"] == resources["limits"], group
        assert groups[group]["envFrom"] == [{"secretRef": {"name": secret}}], group
    env = {e["name"]: e["value"] for e in values["common"]["containerEnv"]}
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_AUTH_MODE"] == "token"  # an open Jobs API runs anyone's code
    assert '--set "image.repository=${API_IMAGE%:*}"' in script
    assert '--set "head.rayVersion=${RAY_VERSION}"' in script


def test_each_ray_group_offers_the_resource_of_its_work_within_its_size() -> None:
    values = _values("ray-cluster")
    serving = values["additionalWorkerGroups"]["serving"]

    offered = json.loads(json.loads(values["worker"]["rayStartParams"]["resources"]))
    assert offered == {TRAINER_RESOURCE: 1}
    offered = json.loads(json.loads(serving["rayStartParams"]["resources"]))
    assert offered == {SERVING_RESOURCE: 1}
    # The head runs Ray's control processes only: no CPU to place work on, no mark.
    assert values["head"]["rayStartParams"] == {"num-cpus": "0"}
    # The replicas fit their group.
    config = kube.api_settings()
    wanted = int(config["MLOPS_SERVE_REPLICAS"]) * float(config["MLOPS_SERVE_REPLICA_CPUS"])
    assert wanted <= float(serving["resources"]["limits"]["cpu"])
    # Ray's memory on a node is what its object store (30 %) leaves of the pod's limit.
    limit_mb = int(values["worker"]["resources"]["limits"]["memory"].removesuffix("Gi")) * 1024
    assert PlatformSettings().trainer_memory_mb <= 0.7 * limit_mb


def test_the_ray_head_service_is_where_the_api_looks() -> None:
    settings = kube.api_settings()
    head = f"{_values('ray-cluster')['fullnameOverride']}-head-svc.kuberay.svc.cluster.local"

    assert settings["MLOPS_RAY_ADDRESS"] == f"http://{head}:8265"
    assert settings["MLOPS_SERVE_URL"] == f"http://{head}:8000"
    ports = {p["name"]: p["containerPort"] for p in _values("ray-cluster")["head"]["ports"]}
    assert ports["dashboard"] == 8265 and ports["serve"] == 8000


def test_mlflow_persists_its_store_and_proxies_artifacts_to_minio() -> None:
    values = _values("mlflow")

    store = values["backendStore"]["defaultSqlitePath"]
    assert store != ":memory:"
    mounts = {m["mountPath"] for m in values["extraVolumeMounts"]}
    assert any(store.startswith(m + "/") for m in mounts)
    claim = values["extraVolumes"][0]["persistentVolumeClaim"]["claimName"]
    assert any(
        d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim
        for d in values["extraDeploy"]
    )
    assert values["strategy"]["type"] == "Recreate"
    assert values["artifactRoot"]["proxiedArtifactStorage"] is True
    assert values["artifactRoot"]["s3"]["bucket"] == _values("minio")["buckets"][0]["name"]


def test_images_are_pinned_and_still_pull() -> None:
    redis = _values("redis")
    minio = _values("minio")

    # Bitnami's free images moved to bitnamilegacy in 2025.
    assert redis["image"]["repository"] == "bitnamilegacy/redis"
    assert re.fullmatch(r"\d+\.\d+\.\d+-debian-\d+-r\d+", redis["image"]["tag"])
    assert re.fullmatch(r"RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z", minio["image"]["tag"])
    # Standalone: one server (the chart reads `replicas` only in distributed mode).
    assert minio["mode"] == "standalone" and "replicas" not in minio
    # Never the chart's default console/console123 login: our users, keys from a Secret.
    assert all("secretKey" not in user for user in minio["users"])
    assert "console" not in {user["accessKey"] for user in minio["users"]}


def test_argocd_serves_plain_http_on_its_node_port() -> None:
    values = _values("argo-cd")

    assert values["configs"]["params"]["server.insecure"] is True
    assert "insecure" not in values["server"]
    assert values["server"]["service"]["nodePortHttp"] == 30080


def test_the_api_and_ray_sign_in_to_redis_as_their_own_users_from_the_mounted_acl_file() -> None:
    redis = _values("redis")
    ray_env = {e["name"]: e.get("value") for e in _values("ray-cluster")["common"]["containerEnv"]}
    api_settings = kube.api_settings()

    assert ray_env["MLOPS_REDIS_USERNAME"] == redis_users.RAY.name
    assert api_settings["MLOPS_REDIS_USERNAME"] == redis_users.API.name
    acl_file = re.search(r"^aclfile (\S+)$", redis["commonConfiguration"], re.M)
    assert acl_file is not None
    mount = redis["master"]["extraVolumeMounts"][0]
    volume = next(v for v in redis["master"]["extraVolumes"] if v["name"] == mount["name"])
    assert acl_file.group(1) == f"{mount['mountPath']}/users.acl"
    assert volume["secret"]["secretName"] == "redis-users"  # written by init.sh
    # The chart's own ACL would render the default user from a cluster lookup.
    assert "acl" not in redis["auth"]
