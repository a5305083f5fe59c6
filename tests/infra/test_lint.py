"""shellcheck on every script, yamllint on our YAML, and the CI workflows' hygiene."""

from __future__ import annotations

import re
import subprocess

import yaml
from infra import kube

YAML_FOLDERS = ("config", "helm-values", "manifests", "argocd", ".github")


def _scripts() -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files", "*.sh", ".ci/*"],
        cwd=kube.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted({str(kube.ROOT / p) for p in tracked} | {str(kube.ROOT / "config" / "init.sh")})


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = _scripts()

    result = subprocess.run(
        [kube.tool("shellcheck"), "--external-sources", *scripts], capture_output=True, text=True
    )

    assert len(scripts) >= 2
    assert result.returncode == 0, result.stdout


def test_yaml_passes_yamllint() -> None:
    result = subprocess.run(
        [kube.tool("yamllint"), "--strict", *YAML_FOLDERS, ".yamllint.yaml"],
        cwd=kube.ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout


def _workflows() -> dict[str, dict]:
    folder = kube.ROOT / ".github" / "workflows"
    return {p.name: yaml.safe_load(p.read_text()) for p in folder.glob("*.yml")}


def test_workflows_pin_actions_limit_permissions_and_time() -> None:
    workflows = _workflows()

    assert set(workflows) == {"ci.yml", "images.yml", "e2e.yml"}
    for name, flow in workflows.items():
        assert "permissions" in flow, f"{name}: no top-level permissions"
        assert flow["permissions"] in ({}, {"contents": "read"}), name
        for job_name, job in flow["jobs"].items():
            assert job.get("timeout-minutes"), f"{name}/{job_name}: no timeout"
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step


def test_the_cluster_proof_runs_init_sh_and_the_users_path_on_both_architectures() -> None:
    e2e = _workflows()["e2e.yml"]
    cluster, images = e2e["jobs"]["cluster"], e2e["jobs"]["images"]
    runs = [step.get("run", "") for step in cluster["steps"]]

    assert cluster["strategy"]["matrix"]["runner"] == ["ubuntu-24.04", "ubuntu-24.04-arm"]
    assert runs.index("./config/init.sh") < runs.index("python3 tests/cluster/e2e.py")
    uploads = [s for s in cluster["steps"] if "upload-artifact" in s.get("uses", "")]
    assert uploads and uploads[0]["if"] == "failure()"
    image_runs = " ".join(step.get("run", "") for step in images["steps"])
    assert "./config/init.sh images | python3 tests/cluster/resolve_images.py" in image_runs


def test_ci_runs_the_readme_test_command() -> None:
    ci = _workflows()["ci.yml"]
    runs = [step.get("run", "") for step in ci["jobs"]["test"]["steps"]]
    ci_run = (kube.ROOT / ".ci" / "run").read_text()

    assert "bash .ci/run" in runs
    assert "make test" in ci_run
    assert "make test" in (kube.ROOT / "README.md").read_text()


def test_the_image_workflow_builds_both_architectures_and_bumps_the_kustomizations() -> None:
    images = _workflows()["images.yml"]
    build = images["jobs"]["build"]
    push = next(s for s in build["steps"] if "build-push-action" in s.get("uses", ""))
    bump = "\n".join(s.get("run", "") for s in images["jobs"]["bump"]["steps"])

    assert push["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["permissions"] == {"contents": "read", "packages": "write"}
    for app in ("api", "dashboard"):
        assert app in {
            i["image"].removeprefix("mlops-") for i in build["strategy"]["matrix"]["include"]
        }
        text = (kube.ROOT / "manifests" / app / "kustomization.yaml").read_text()
        assert re.search(r"^    newName: ", text, re.M) and re.search(r"^    newTag: ", text, re.M)
    assert "manifests/${app}/kustomization.yaml" in bump and "git push" in bump
