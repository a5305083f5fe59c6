"""manifests/, argocd/ and kind-config.yaml, checked as strictly as the tools allow.

No cluster runs here: every resource is validated against the Kubernetes 1.31 schemas in
strict mode (kubernetes-validate), our custom resources against their own schemas, the
kustomizations are built with a pinned kubectl, and checkov scans what they render.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from infra import kube

K8S_VERSION = kube.versions()["KUBERNETES_MINOR"] + ".0"


def _all_resources() -> list[tuple[str, dict[str, Any]]]:
    resources = [(f"manifests/{k}", doc) for k in kube.KUSTOMIZATIONS for doc in kube.kustomize(k)]
    for path in sorted((kube.ROOT / "argocd").glob("*.yaml")):
        resources += [(str(path.relative_to(kube.ROOT)), doc) for doc in kube.load_all(path)]
    return resources


def _validate(doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in kube.CUSTOM_KINDS:
        jsonschema.validate(doc, kube.custom_schema(*key))
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_resource_validates_strictly_against_its_schema() -> None:
    failures = []
    resources = _all_resources()
    for origin, doc in resources:
        try:
            _validate(doc)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            failures.append(f"{origin} {doc['kind']}/{doc['metadata']['name']}: {exc}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{origin}: no schema for {doc['apiVersion']} {doc['kind']}")

    assert len(resources) > 20
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("origin", "mutate"),
    [
        ("deployment", lambda d: d["spec"].update(replica=2)),  # misspelt field
        ("deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name")),
        ("application", lambda d: d["spec"]["syncPolicy"]["automated"].update(prun=True)),
        ("application", lambda d: d["spec"].pop("destination")),
    ],
)
def test_the_validation_rejects_a_broken_resource(origin: str, mutate) -> None:
    if origin == "deployment":
        doc = next(d for d in kube.kustomize("api") if d["kind"] == "Deployment")
    else:
        doc = kube.load_all(kube.ROOT / "argocd" / "mlops-api.yaml")[0]
    broken = copy.deepcopy(doc)
    mutate(broken)

    _validate(doc)
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        _validate(broken)


def test_an_unknown_kind_fails_unless_it_has_a_schema() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}}

    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        _validate(doc)


def _argocd(kind: str) -> dict[str, dict[str, Any]]:
    docs = [doc for p in (kube.ROOT / "argocd").glob("*.yaml") for doc in kube.load_all(p)]
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_applications_sync_this_repository_with_prune_self_heal_and_finalizer() -> None:
    apps = _argocd("Application")

    assert set(apps) == {"mlops-api", "mlops-dashboard"}
    for name, app in apps.items():
        folder = name.removeprefix("mlops-")
        spec = app["spec"]
        assert spec["project"] == "mlops"
        assert spec["source"]["path"] == f"manifests/{folder}"
        assert (kube.ROOT / "manifests" / folder / "kustomization.yaml").exists()
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        # The namespace comes from manifests/cluster with its Pod Security labels.
        assert "CreateNamespace=true" not in spec["syncPolicy"].get("syncOptions", [])
        assert "resources-finalizer.argocd.argoproj.io" in app["metadata"]["finalizers"]


def test_the_project_admits_only_this_repository_our_namespaces_and_the_kinds_we_sync() -> None:
    project = _argocd("AppProject")["mlops"]["spec"]
    apps = _argocd("Application").values()
    synced = [d for k in ("api", "dashboard") for d in kube.kustomize(k)]

    assert project["sourceRepos"] == sorted({a["spec"]["source"]["repoURL"] for a in apps})
    assert sorted(project["destinations"], key=str) == sorted(
        (a["spec"]["destination"] for a in apps), key=str
    )
    assert project["clusterResourceWhitelist"] == []
    allowed = {(kind["group"], kind["kind"]) for kind in project["namespaceResourceWhitelist"]}
    assert allowed == {(d["apiVersion"].rpartition("/")[0], d["kind"]) for d in synced}


def test_argocd_does_not_manage_what_helm_installs() -> None:
    synced = {d["kind"] for k in ("api", "dashboard") for d in kube.kustomize(k)}

    assert not synced & {"RayCluster", "StatefulSet", "Namespace", "Application"}
    # The original design's namespaces, so its documented commands work verbatim.
    assert {d["metadata"]["namespace"] for d in kube.kustomize("api")} == {"fastapi"}
    assert {d["metadata"]["namespace"] for d in kube.kustomize("dashboard")} == {"frontend"}


def test_workloads_are_hardened() -> None:
    for folder in kube.KUSTOMIZATIONS:
        for doc in kube.kustomize(folder):
            if doc["kind"] != "Deployment":
                continue
            pod = doc["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                ctx = container["securityContext"]
                name = f"{folder}/{container['name']}"
                assert ctx["allowPrivilegeEscalation"] is False, name
                assert ctx["readOnlyRootFilesystem"] is True, name
                assert ctx["capabilities"]["drop"] == ["ALL"], name
                assert container["resources"]["limits"]["memory"], name
                assert "livenessProbe" in container and "readinessProbe" in container, name


def test_the_api_is_probed_scraped_and_takes_secrets_by_reference() -> None:
    deployment = next(d for d in kube.kustomize("api") if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    # Readiness is the API's own (a dependency blip must not empty the Service).
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {"mlops-settings", "mlops-secrets"}
    assert not any("PASSWORD" in e["name"] or "SECRET" in e["name"] for e in container["env"])


@pytest.mark.parametrize("folder", ["api", "dashboard"])
def test_our_namespaces_deny_by_default(folder: str) -> None:
    policies = [d for d in kube.kustomize(folder) if d["kind"] == "NetworkPolicy"]
    deny = next(p for p in policies if p["metadata"]["name"] == "default-deny")

    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


def test_the_namespaces_are_the_original_designs() -> None:
    namespaces = {
        d["metadata"]["name"]
        for d in kube.load_all(kube.ROOT / "manifests" / "cluster" / "namespaces.yaml")
    }

    assert namespaces == {
        "fastapi",
        "frontend",
        "kuberay",
        "mlflow",
        "minio",
        "db",
        "argocd",
        "kubernetes-dashboard",
    }


def test_every_localhost_port_reaches_a_fixed_node_port() -> None:
    config = yaml.safe_load((kube.ROOT / "config" / "kind-config.yaml").read_text())
    mappings = config["nodes"][0]["extraPortMappings"]
    declared = set()
    for folder in kube.KUSTOMIZATIONS:
        declared |= kube.node_ports_in(kube.kustomize(folder))
    for values in (kube.ROOT / "helm-values").glob("*.yaml"):
        declared |= kube.node_ports_in_values(values.read_text())

    host_ports = {m["hostPort"] for m in mappings}
    assert host_ports == {8080, 5555, 8265, 9000, 9001, 5001, 8888, 6379, 8001}
    assert {m["containerPort"] for m in mappings} == declared
    assert all(m["listenAddress"] == "127.0.0.1" for m in mappings)


def test_the_kind_node_image_is_pinned_by_digest_to_the_validated_kubernetes() -> None:
    config = yaml.safe_load((kube.ROOT / "config" / "kind-config.yaml").read_text())
    image = config["nodes"][0]["image"]

    assert image.startswith(f"kindest/node:v{kube.versions()['KUBERNETES_MINOR']}.")
    assert "@sha256:" in image and len(image.split("@sha256:")[1]) == 64


def test_checkov_finds_nothing_and_every_skip_has_a_reason(tmp_path: Path) -> None:
    skips = []
    for folder in kube.KUSTOMIZATIONS:
        docs = kube.kustomize(folder)
        (tmp_path / f"{folder}.yaml").write_text(yaml.safe_dump_all(docs))
        for doc in docs:
            for key, value in doc["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    skips.append(value)

    result = subprocess.run(
        [
            kube.checkov(),
            "--directory",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )

    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["passed"] > 100
    assert summary["failed"] == 0, failed
    assert skips and all("=" in s and len(s.split("=", 1)[1]) > 15 for s in skips)


def _policies() -> list[dict]:
    cluster = kube.load_all(kube.ROOT / "manifests" / "cluster" / "network-policies.yaml")
    ours = [d for k in ("api", "dashboard") for d in kube.kustomize(k)]
    return [d for d in cluster + ours if d["kind"] == "NetworkPolicy"]


def _installed_namespaces() -> set[str]:
    script = (kube.ROOT / "config" / "init.sh").read_text()
    releases = re.findall(r"^\s*helm_release \S+ \S+ \S+ (\S+) ", script, re.MULTILINE)
    return set(releases) | {"fastapi", "frontend"}


def test_every_namespace_we_install_into_denies_by_default() -> None:
    denied = {
        p["metadata"]["namespace"]
        for p in _policies()
        if p["metadata"]["name"] == "default-deny" and p["spec"]["podSelector"] == {}
    }

    assert _installed_namespaces() == {
        "minio", "mlflow", "db", "kuberay", "argocd", "fastapi", "frontend"
    }  # fmt: skip
    assert _installed_namespaces() <= denied
    assert "kubernetes-dashboard" in denied  # applied by init.sh from manifests/cluster


def _node_rules() -> list[dict[str, Any]]:
    return [p for p in _policies() if p["metadata"]["name"].startswith("from-the-node")]


def test_the_node_reaches_each_pod_only_on_its_probe_and_node_ports() -> None:
    admitted: dict[tuple[str, str], set[int]] = {}
    for policy in _node_rules():
        selected = policy["spec"]["podSelector"].get("matchLabels", {})
        pods = next(iter(selected.values()), "every pod")
        key = (policy["metadata"]["namespace"], pods)
        for rule in policy["spec"]["ingress"]:
            admitted.setdefault(key, set()).update(p["port"] for p in rule["ports"])

    # The kubelet's HTTP probes and the NodePorts config/kind-config.yaml publishes, read
    # from the charts rendered with our values (Redis's and Ray's probes are exec).
    assert admitted == {
        ("kuberay", "head"): {8265},
        ("kuberay", "kuberay-operator"): {8080},
        ("mlflow", "every pod"): {5000},
        ("db", "every pod"): {6379},
        ("minio", "every pod"): {9000, 9001},
        ("argocd", "argocd-server"): {8080},
        ("argocd", "argocd-repo-server"): {8084},
        ("argocd", "argocd-application-controller"): {8082},
        ("kubernetes-dashboard", "every pod"): {4466},
    }


def _allowed_ingress(namespace: str) -> dict[str, set[int]]:
    """Source namespace -> ports, for the policies that admit pods of other namespaces."""
    allowed: dict[str, set[int]] = {}
    for policy in _policies():
        if policy["metadata"]["namespace"] != namespace:
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            for source in rule.get("from", []):
                if "namespaceSelector" in source:
                    name = source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    allowed.setdefault(name, set()).update(ports)
    return allowed


def test_only_what_must_talk_may() -> None:
    assert _allowed_ingress("kuberay") == {"fastapi": {8265, 8000}}
    assert _allowed_ingress("mlflow") == {"fastapi": {5000}, "kuberay": {5000}}
    assert _allowed_ingress("db") == {"fastapi": {6379}, "kuberay": {6379}}
    assert _allowed_ingress("minio") == {"mlflow": {9000}, "kuberay": {9000}, "fastapi": {9000}}
    assert _allowed_ingress("argocd") == {}


def test_the_node_is_told_from_pods_by_the_declared_pod_network() -> None:
    config = yaml.safe_load((kube.ROOT / "config" / "kind-config.yaml").read_text())
    pod_network = config["networking"]["podSubnet"]
    node_rules = _node_rules()

    assert {p["metadata"]["namespace"] for p in node_rules} >= _installed_namespaces() - {
        "fastapi", "frontend"
    }  # fmt: skip
    for policy in node_rules:
        block = policy["spec"]["ingress"][0]["from"][0]["ipBlock"]
        assert block == {"cidr": "0.0.0.0/0", "except": [pod_network]}


def test_our_namespaces_enforce_the_restricted_pod_security_profile() -> None:
    labels = {
        d["metadata"]["name"]: d["metadata"].get("labels", {})
        for d in kube.load_all(kube.ROOT / "manifests" / "cluster" / "namespaces.yaml")
    }

    for ours in ("fastapi", "frontend"):
        assert labels[ours]["pod-security.kubernetes.io/enforce"] == "restricted"
    for theirs in ("kuberay", "mlflow", "db", "minio", "argocd"):
        assert labels[theirs]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["kubernetes-dashboard"]["pod-security.kubernetes.io/enforce"] == "restricted"
