"""A stand-in for kind, kubectl, helm, docker and uname, for testing config/init.sh.

Installed under each tool's name (a wrapper that sets $STUB_TOOL) on a PATH that holds
nothing else of theirs. Every call is appended to $STUB_CALLS as one JSON line;
$STUB_STATE (a JSON file) remembers what exists (clusters, secrets) so a second run sees
the first one's work, as it would for real. $STUB_ARCH is what `uname -m` says;
$STUB_DOCKER_DOWN makes `docker info` fail.

A run of init.sh makes about sixty calls, each a new process: only what every call
needs is imported at the top, the rest where it is used.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys

STATE = os.environ["STUB_STATE"]


def _load() -> dict:
    if not os.path.exists(STATE):
        return {"clusters": [], "secrets": {}}
    with open(STATE) as file:
        return json.load(file)


def _save(state: dict) -> None:
    with open(STATE, "w") as file:
        json.dump(state, file)


def _record(tool: str, args: list[str], stdin: str | None = None) -> None:
    with open(os.environ["STUB_CALLS"], "a") as calls:
        calls.write(json.dumps({"tool": tool, "args": args, "stdin": stdin}) + "\n")


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def kind(args: list[str], state: dict) -> int:
    if args[:1] == ["version"]:
        print("kind v0.29.0 go1.24.2 linux/amd64")
    elif args[:2] == ["get", "clusters"]:
        print("\n".join(state["clusters"]))
    elif args[:2] == ["create", "cluster"]:
        state["clusters"].append(_option(args, "--name"))
    elif args[:2] == ["delete", "cluster"]:
        state["clusters"].remove(_option(args, "--name"))
    return 0


def kubectl(args: list[str], state: dict, stdin: str = "") -> int:
    args = [a for a in args if a not in ("--context", "kind-mlops")]
    if args[:2] == ["version", "--client"]:
        print(json.dumps({"clientVersion": {"gitVersion": "v1.33.1"}}, indent=2))
    elif args[:2] == ["get", "secret"]:
        import base64
        import re

        key = f"{_option(args, '--namespace')}/{args[2]}"
        field = re.search(r"\{\.data\.([^}]+)\}", _option(args, "-o") or "")
        generated = {
            "argocd/argocd-initial-admin-secret": {"password": "argocd-generated"},
            "kubernetes-dashboard/dashboard-admin-token": {"token": "token-from-kubernetes"},
        }
        data = state["secrets"].get(key) or generated.get(key, {})
        value = data.get(field.group(1)) if field else None
        if value:
            print(base64.b64encode(value.encode()).decode(), end="")
    elif args[:2] == ["apply", "-f"] and args[2] == "-":
        import base64

        import yaml

        doc = yaml.safe_load(stdin)
        _record("kubectl-applied", [doc["kind"], doc["metadata"]["name"]], json.dumps(doc))
        if doc["kind"] == "Secret":
            key = f"{doc['metadata']['namespace']}/{doc['metadata']['name']}"
            data = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
            state["secrets"][key] = data
    elif args[:2] == ["get", "pod"]:
        print("pod/mlops-ray-head-x7k2p")
    elif args[:1] == ["kustomize"]:  # reads files only: the real kubectl of the venv
        import subprocess

        real = os.path.join(os.path.dirname(sys.executable), "kubectl")
        return subprocess.run([real, *args], check=False).returncode
    return 0


def helm(args: list[str], state: dict) -> int:
    """`helm template` renders a Pod with one image per release (the Ray cluster's from
    its --set flags, as the chart does); everything else succeeds silently."""
    if args[:1] == ["template"]:
        release = args[1]
        sets = dict(a.split("=", 1) for a in args if a.startswith("image."))
        image = (
            f"{sets['image.repository']}:{sets['image.tag']}"
            if sets
            else f"registry.example/{release}:1.0"
        )
        print(f"---\nkind: Pod\nspec:\n  containers:\n    - name: main\n      image: {image}")
    return 0


def docker(args: list[str], state: dict) -> int:
    if args[:1] == ["info"] and os.environ.get("STUB_DOCKER_DOWN"):
        print("Cannot connect to the Docker daemon", file=sys.stderr)
        return 1
    return 0


def uname(args: list[str], state: dict) -> int:
    print(os.environ.get("STUB_ARCH", "x86_64"))
    return 0


def main() -> int:
    tool = os.environ["STUB_TOOL"]
    args = sys.argv[1:]
    # Read what is piped in before taking the lock: its writer may be a stub too.
    piped = args[-3:] == ["apply", "-f", "-"] or "--stdin" in args
    stdin = sys.stdin.read() if piped else ""
    handlers = {
        "kind": kind,
        "kubectl": lambda a, s: kubectl(a, s, stdin),
        "helm": helm,
        "docker": docker,
        "uname": uname,
    }
    with open(f"{STATE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # piped stubs run at once
        _record(tool, args, stdin if "--stdin" in args else None)
        state = _load()
        code = handlers[tool](args, state)
        _save(state)
    return code


if __name__ == "__main__":
    sys.exit(main())
