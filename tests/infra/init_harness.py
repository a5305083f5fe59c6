"""config/init.sh run with stand-ins for kind, kubectl, helm, docker and uname
(stub_tools.py): every call is recorded, and what it applied can be read back."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from infra import kube

TOOLS = ("kind", "kubectl", "helm", "docker", "uname")
SYSTEM_TOOLS = (
    "bash",
    "env",
    "head",
    "base64",
    "tr",
    "cut",
    "sort",
    "sed",
    "awk",
    "grep",
    "mkdir",
    "chmod",
    "mktemp",
    "cat",
    "dirname",
    "git",
    "rm",
)
CLUSTER_TOOLS = {"kind", "kubectl", "helm", "docker"}


class Harness:
    def __init__(self, root: Path, missing: tuple[str, ...] = ()) -> None:
        self.repo = root / "repo"
        for folder in ("config", "helm-values", "manifests", "argocd"):
            shutil.copytree(kube.ROOT / folder, self.repo / folder)
        (self.repo / "outputs").mkdir()
        self.bin = root / "bin"
        self.bin.mkdir()
        stub = Path(__file__).with_name("stub_tools.py")
        for name in TOOLS:
            if name in missing:
                continue
            path = self.bin / name
            path.write_text(
                # -S: no site set-up (a third of a call's time); PYTHONPATH finds yaml.
                f"#!{sys.executable} -S\nimport os, sys\nos.environ['STUB_TOOL'] = {name!r}\n"
                f"sys.path.insert(0, {str(stub.parent)!r})\n"
                "from stub_tools import main\nsys.exit(main())\n"
            )
            path.chmod(0o755)
        for name in SYSTEM_TOOLS:
            found = shutil.which(name)
            assert found, f"{name} is needed by the init.sh tests"
            (self.bin / name).symlink_to(found)
        self.calls_file = root / "calls.jsonl"
        self.state = root / "state.json"  # what the stand-ins remember (stub_tools.py)
        self.env = {
            "PATH": str(self.bin),
            "HOME": str(root),
            "STUB_CALLS": str(self.calls_file),
            "STUB_STATE": str(self.state),
            "STUB_ARCH": "x86_64",
            "PYTHONPATH": os.pathsep.join(sys.path),
        }

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        self.calls_file.write_text("")
        return subprocess.run(
            [str(self.repo / "config" / "init.sh"), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def calls(self, tools: set[str] = CLUSTER_TOOLS) -> list[dict]:
        lines = self.calls_file.read_text().splitlines()
        return [c for c in map(json.loads, lines) if c["tool"] in tools]

    def commands(self) -> list[str]:
        return [" ".join([c["tool"], *c["args"]]) for c in self.calls()]


def call_index(commands: list[str], *words: str) -> int:
    for i, command in enumerate(commands):
        if all(word in command for word in words):
            return i
    raise AssertionError(f"no call with {words}:\n" + "\n".join(commands))


def applied_secrets(harness: Harness) -> dict[tuple[str, str], dict[str, str]]:
    """(namespace, name) -> decoded data of every Secret init.sh applied."""
    secrets = [
        json.loads(c["stdin"])
        for c in harness.calls({"kubectl-applied"})
        if c["args"][0] == "Secret"
    ]
    return {
        (s["metadata"]["namespace"], s["metadata"]["name"]): {
            k: base64.b64decode(v).decode() for k, v in s["data"].items()
        }
        for s in secrets
    }
