"""Network namespaces on one machine standing in for the cluster's namespaces (as root).

Each Kubernetes namespace becomes a network namespace with its own address on a bridge,
and a hosts file (/etc/netns/<name>/hosts, which `ip netns exec` puts over /etc/hosts)
resolving every in-cluster name to the address of the namespace that serves it. So a
process started in one reaches another's servers only by the names the manifests give,
on the ports they give, as in the cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    probe = f"mlops-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], check=False)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)


@dataclass
class Network:
    """A bridge and one network namespace per cluster namespace, on 10.213.<n>.0/24."""

    names: list[str]
    hosts: dict[str, str]  # in-cluster name -> the namespace that serves it
    subnet: int = 213
    tag: str = field(default_factory=lambda: str(os.getpid() % 100000))
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"mrb{self.tag}"

    def netns(self, name: str) -> str:
        return f"mlops-{self.tag}-{name}"

    def create(self) -> None:
        prefix = f"10.{self.subnet}.{os.getpid() % 250}"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{prefix}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, name in enumerate(self.names, start=10):
            netns, outside = self.netns(name), f"mr{self.tag}x{i}"
            self.addresses[name] = f"{prefix}.{i}"
            _ip("netns", "add", netns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("link", "set", outside, "master", self.bridge, "up")
            _ip("addr", "add", f"{self.addresses[name]}/24", "dev", "eth0", netns=netns)
            _ip("link", "set", "eth0", "up", netns=netns)
            _ip("link", "set", "lo", "up", netns=netns)
        lines = ["127.0.0.1 localhost"]
        lines += [f"{self.addresses[ns]} {host}" for host, ns in self.hosts.items()]
        for name in self.names:
            folder = Path("/etc/netns") / self.netns(name)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("\n".join(lines) + "\n")

    def delete(self) -> None:
        """Kills what still runs inside (a process that outlived its supervisor, such as
        a reloaded HAProxy, would keep the namespace alive), then removes everything."""
        for name in self.names:
            listed = subprocess.run(
                ["ip", "netns", "pids", self.netns(name)], capture_output=True, text=True
            )
            for pid in listed.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "delete", self.netns(name)], check=False)
            shutil.rmtree(Path("/etc/netns") / self.netns(name), ignore_errors=True)
        subprocess.run(["ip", "link", "delete", self.bridge], check=False)

    def command(self, name: str, command: list[str]) -> list[str]:
        """`command` run inside namespace `name`, with its hosts file."""
        return ["ip", "netns", "exec", self.netns(name), *command]
