"""config/init.sh's commands and reruns (`down`, `images`, `--dry-run`, a second run, an
upgrade, a missing tool), each on its own stand-in machine (init_harness.py); the
tests that read one plain run are in test_init_sh.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from infra import kube
from infra.init_harness import Harness, applied_secrets


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_a_cluster_from_before_the_users_per_role_keeps_its_admin(harness: Harness) -> None:
    # Then the API signed in as the admin, with its password in the API's Secret.
    harness.run()
    state = json.loads(harness.state.read_text())
    old_admin = state["secrets"]["fastapi/mlops-secrets"]["MLOPS_MLFLOW_PASSWORD"]
    del state["secrets"]["mlflow/mlflow-auth"]
    harness.state.write_text(json.dumps(state))

    assert harness.run().returncode == 0
    by_name = applied_secrets(harness)

    assert by_name["mlflow", "mlflow-auth"]["admin-password"] == old_admin
    assert f"admin_password = {old_admin}" in by_name["mlflow", "mlflow-auth"]["basic_auth.ini"]
    assert by_name["fastapi", "mlops-secrets"]["MLOPS_MLFLOW_PASSWORD"] != old_admin
    assert by_name["kuberay", "mlops-secrets"]["MLFLOW_TRACKING_PASSWORD"] != old_admin


def test_a_second_run_creates_nothing_twice_and_keeps_the_secrets(harness: Harness) -> None:
    harness.run()
    first = (harness.repo / "outputs" / "credentials.txt").read_text()

    result = harness.run()

    assert result.returncode == 0, result.stderr
    commands = harness.commands()
    assert not [c for c in commands if "create cluster" in c]
    assert "cluster mlops exists" in result.stderr
    assert (harness.repo / "outputs" / "credentials.txt").read_text() == first


def test_dry_run_prints_the_plan_and_calls_nothing(harness: Harness) -> None:
    result = harness.run("--dry-run")

    assert result.returncode == 0, result.stderr
    assert harness.calls() == []
    assert "would run: kind create cluster" in result.stdout
    assert "would run: helm upgrade --install mlflow" in result.stdout
    assert "would apply secret db/redis-auth (password api ray)" in result.stdout
    assert "-- python -m mlops.clients.mlflow_users (its input on stdin)" in result.stdout
    assert not (harness.repo / "outputs" / "credentials.txt").exists()


@pytest.mark.parametrize(
    ("uname", "platform", "base"),
    [
        ("arm64", "linux/arm64", "2.60.0-py311-aarch64"),
        ("aarch64", "linux/arm64", "2.60.0-py311-aarch64"),
        ("x86_64", "linux/amd64", "2.60.0-py311"),
    ],
)
def test_the_architecture_picks_the_image_platform(
    harness: Harness, uname: str, platform: str, base: str
) -> None:
    result = harness.run(STUB_ARCH=uname)

    assert result.returncode == 0, result.stderr
    builds = [c for c in harness.commands() if c.startswith("docker build")]
    assert len(builds) == 2 and all(f"--platform {platform}" in b for b in builds)
    assert f"rayproject/ray:{base}\n" in result.stderr
    dockerfile = (kube.ROOT / "fastapi" / "Dockerfile").read_text()
    arch = platform.split("/")[1]
    assert (
        f"FROM rayproject/ray:${{RAY_VERSION}}-{base.split('-', 1)[1]} AS ray-{arch}" in dockerfile
    )


@pytest.mark.parametrize(
    ("missing", "fix"),
    [
        ("kind", "go install sigs.k8s.io/kind@v"),
        ("helm", "brew install helm"),
        ("kubectl", "brew install kubectl"),
        ("docker", "install Docker"),
    ],
)
def test_a_missing_tool_stops_with_its_fix(tmp_path: Path, missing: str, fix: str) -> None:
    harness = Harness(tmp_path, missing=(missing,))

    result = harness.run()

    assert result.returncode == 1
    assert f"error: {missing} is not installed. Fix: " in result.stderr and fix in result.stderr
    assert not [c for c in harness.commands() if not c.startswith(("docker info", "kind version"))]


def test_docker_not_running_stops_with_the_fix(harness: Harness) -> None:
    result = harness.run(STUB_DOCKER_DOWN="1")

    assert result.returncode == 1
    assert "Docker is not running. Fix: start Docker Desktop" in result.stderr
    assert harness.commands() == ["docker info"]


def test_applications_follow_the_clone_remote_over_https(harness: Harness) -> None:
    git = ["git", "-C", str(harness.repo)]
    subprocess.run([*git, "init", "-q", "-b", "release"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "git@github.com:acme/mlops.git"], check=True)

    harness.run()

    applied = [json.loads(c["stdin"]) for c in harness.calls({"kubectl-applied"})]
    apps = [a for a in applied if a["kind"] == "Application"]
    project = next(a for a in applied if a["kind"] == "AppProject")
    assert {a["spec"]["source"]["repoURL"] for a in apps} == {"https://github.com/acme/mlops.git"}
    assert {a["spec"]["source"]["targetRevision"] for a in apps} == {"release"}
    assert project["spec"]["sourceRepos"] == ["https://github.com/acme/mlops.git"]


def test_down_deletes_the_cluster_and_the_outputs(harness: Harness) -> None:
    harness.run()

    result = harness.run("down")

    assert result.returncode == 0, result.stderr
    assert "kind delete cluster --name mlops" in harness.commands()
    assert not (harness.repo / "outputs" / "credentials.txt").exists()
    assert harness.run("down").returncode == 0  # nothing left: still fine


def test_an_unknown_argument_prints_the_usage(harness: Harness) -> None:
    result = harness.run("--force")

    assert result.returncode == 1
    assert (
        "config/init.sh --dry-run" in result.stderr and "unknown argument: --force" in result.stderr
    )
    assert harness.calls() == []


def test_images_lists_what_the_releases_and_manifests_pull_as_up_installs_them(
    harness: Harness,
) -> None:
    harness.run()
    installs = {
        c["args"][2]: c["args"][3:]
        for c in harness.calls({"helm"})
        if c["args"][:2] == ["upgrade", "--install"]
    }

    result = harness.run("images")

    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    renders = {
        c["args"][1]: c["args"][2:] for c in harness.calls({"helm"}) if c["args"][0] == "template"
    }
    assert set(renders) == set(installs)  # every release, ArgoCD included
    for release, args in renders.items():
        flags = [a for a in installs[release] if a not in ("--wait",)]
        for flag in ("--version", "--namespace", "--values", "--set"):
            assert _options(args, flag) == _options(flags, flag), release
    assert "registry.example/mlflow:1.0" in listed and "registry.example/argocd:1.0" in listed
    assert not any("mlops-api" in image or "mlops-dashboard" in image for image in listed)
    assert "ghcr.io/headlamp-k8s/headlamp:v0.39.0" in listed  # from manifests/cluster
    assert not harness.calls({"kind", "docker"})  # nothing created


def _options(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]
