"""The container images, checked statically (no Docker engine runs in CI)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ray_pin() -> str:
    project = tomllib.loads((ROOT / "fastapi" / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if re.match(r"ray\[", d)]
    assert len(pins) == 1, pins
    return pins[0].split("==")[1]


def _dockerfile_arg(path: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", path.read_text(), re.M)
    assert match, f"{path} declares no default for {name}"
    return match.group(1)


def test_the_api_image_is_built_from_the_ray_version_the_code_pins() -> None:
    pinned = _ray_pin()
    locked = re.search(r"^ray==(\S+)", (ROOT / "fastapi" / "requirements.lock").read_text(), re.M)

    image = _dockerfile_arg(ROOT / "fastapi" / "Dockerfile", "RAY_VERSION")

    assert locked is not None
    assert image == pinned == locked.group(1)


def test_the_api_image_installs_runtime_dependencies_only() -> None:
    dockerfile = (ROOT / "fastapi" / "Dockerfile").read_text()
    runtime = (ROOT / "fastapi" / "requirements.lock").read_text()

    assert "-r fastapi/requirements.lock" in dockerfile
    assert not re.search(r"^(pytest|playwright|ruff|moto)==", runtime, re.M)


def _unhashed_pins(lock: str) -> list[str]:
    """Pins (`name==version …`) that no `--hash=sha256:` line follows."""
    lines = (ROOT / "fastapi" / lock).read_text().splitlines()
    return [
        line
        for index, line in enumerate(lines)
        if re.match(r"^[A-Za-z0-9._-]+==", line)
        and not (index + 1 < len(lines) and "--hash=sha256:" in lines[index + 1])
    ]


def test_the_image_installs_only_what_the_lock_hashes() -> None:
    """Supply chain: a package whose bytes differ from the locked hashes fails the build."""
    dockerfile = (ROOT / "fastapi" / "Dockerfile").read_text()

    assert _unhashed_pins("requirements.lock") == []
    assert _unhashed_pins("requirements-dev.lock") == []
    assert "--require-hashes" in dockerfile


def test_the_image_installs_uv_from_its_hashed_lock_at_the_makefiles_version() -> None:
    dockerfile = (ROOT / "fastapi" / "Dockerfile").read_text()
    lock = (ROOT / "fastapi" / "requirements-uv.lock").read_text()
    version = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)

    assert version and f"uv=={version.group(1)} \\" in lock
    assert "--hash=sha256:" in lock
    assert "--require-hashes --no-deps -r fastapi/requirements-uv.lock" in dockerfile
    assert not re.search(r"pip install[^\n]*\buv==", dockerfile)  # never unhashed


def test_images_run_as_non_root() -> None:
    for dockerfile in (ROOT / "fastapi" / "Dockerfile", ROOT / "frontend" / "Dockerfile"):
        users = re.findall(r"^USER (\S+)$", dockerfile.read_text(), re.M)
        base = re.findall(r"^FROM (\S+)", dockerfile.read_text(), re.M)[-1]
        # nginx-unprivileged runs as uid 101 by itself; ours must end on a non-root USER.
        assert (users and users[-1] not in {"root", "0"}) or "nginx-unprivileged" in base


def test_the_dashboard_image_carries_the_streams_one_address_may_open() -> None:
    """Each alert stream through /api/ holds two connections (the browser's, the API's):
    the image's nginx must hold the DASHBOARD_CLIENT_CONNECTIONS streams that one address
    may open, in the image and as the deployment sets it, with the files they need."""
    main = (ROOT / "frontend" / "nginx-main.conf").read_text()
    dockerfile = (ROOT / "frontend" / "Dockerfile").read_text()
    deployment = (ROOT / "manifests" / "dashboard" / "deployment.yaml").read_text()

    def setting(pattern: str, text: str) -> int:
        match = re.search(pattern, text, re.M)
        assert match, pattern
        return int(match.group(1))

    workers = setting(r"^worker_processes (\d+);", main)
    connections = setting(r"^\s*worker_connections (\d+);", main)
    open_files = setting(r"^worker_rlimit_nofile (\d+);", main)
    per_address = {
        setting(r"DASHBOARD_CLIENT_CONNECTIONS=(\d+)", dockerfile),
        setting(r"DASHBOARD_CLIENT_CONNECTIONS\n\s+value: \"(\d+)\"", deployment),
    }

    assert "COPY nginx-main.conf /etc/nginx/nginx.conf" in dockerfile
    assert workers * connections >= 2 * max(per_address)
    assert open_files >= connections + 64  # and its logs and listening sockets
    # Where the image's entrypoint renders nginx.conf; the root filesystem is read-only.
    assert "include /etc/nginx/conf.d/*.conf;" in main
    assert re.search(r"^pid /tmp/", main, re.M)
