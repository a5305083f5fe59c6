"""Helpers for the static checks of the Kubernetes side: paths, rendering, versions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUSTOMIZATIONS = ("cluster", "api", "dashboard")
SCHEMAS = Path(__file__).parent / "schemas"
# Kinds without a Kubernetes schema that our files may contain: each has its own schema
# in schemas/. Any other unknown kind fails.
CUSTOM_KINDS = {("argoproj.io/v1alpha1", "Application"), ("argoproj.io/v1alpha1", "AppProject")}


def versions() -> dict[str, str]:
    """config/versions.env as a dict (the file is plain KEY=value lines)."""
    pairs = {}
    for line in (ROOT / "config" / "versions.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def tool(name: str) -> str:
    """A checking tool from the test environment (installed by `make test`)."""
    path = BIN / name
    assert path.exists(), f"{name} is missing from {BIN}: run `make test`"
    return str(path)


def kustomize(folder: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(ROOT / "manifests" / folder)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def api_settings() -> dict[str, str]:
    """The API's ConfigMap data, as manifests/api renders it."""
    return next(d for d in kustomize("api") if d["kind"] == "ConfigMap")["data"]


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def custom_schema(api_version: str, kind: str) -> dict[str, Any]:
    name = f"{api_version.replace('/', '_')}_{kind}.json"
    return json.loads((SCHEMAS / name).read_text())


def checkov() -> str:
    """checkov's own environment (.venv-checkov), or MLOPS_CHECKOV."""
    path = os.environ.get("MLOPS_CHECKOV", str(ROOT / ".venv-checkov" / "bin" / "checkov"))
    assert Path(path).exists(), f"checkov is missing at {path}: run `make test`"
    return path


def node_ports_in(docs: list[dict[str, Any]]) -> set[int]:
    return {
        port["nodePort"]
        for doc in docs
        if doc.get("kind") == "Service"
        for port in doc["spec"].get("ports", [])
        if "nodePort" in port
    }


def node_ports_in_values(text: str) -> set[int]:
    """nodePorts a Helm values file sets (keys nodePort, nodePortHttp, nodePorts.*)."""
    return {int(n) for n in re.findall(r"nodePort\w*:\s*\"?(\d{5})\"?", text)} | {
        int(n) for n in re.findall(r"^\s+\w+:\s*\"(3\d{4})\"", text, re.M)
    }


def chart_allowed_hosts(values: dict[str, Any]) -> str:
    """MLFLOW_SERVER_ALLOWED_HOSTS as the chart's `mlflow.serverAllowedHosts` helper
    renders it: ingress hosts (when enabled), then serverAllowedHosts, deduplicated in
    order, collapsed to "*" when the wildcard is listed, comma-joined."""
    hosts: list[str] = []
    ingress = values.get("ingress", {})
    if ingress.get("enabled") and ingress.get("hosts"):
        hosts += [entry["host"] for entry in ingress["hosts"] if entry.get("host")]
    hosts += values.get("serverAllowedHosts", [])
    unique = list(dict.fromkeys(hosts))
    return "*" if "*" in unique else ",".join(unique)
