"""Start, watch and stop the local platform's processes, with no orphans.

Each component runs in its own process group (Ray and MLflow fork workers), all in the
supervisor's session: where the kernel groups processes by session, niceness then
decides between MLflow's server, Ray's training processes and serving. Stopping one
sends SIGTERM to its leader, waits a grace period, then SIGKILLs the whole group. Ray's
processes leave the group (they start groups of their own), so the process tree is
taken before the signal and whatever of it survives is killed too.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from mlops.local.components import Component
from mlops.ml.niceness import lower_priority
from mlops.retry import backoff_blocking

log = logging.getLogger("mlops.local")

_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A component exited or did not become ready in time."""


@dataclass
class Running:
    component: Component
    process: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def raise_if_exited(self) -> None:
        """StartupError with the exit code and the log's last lines, once it has exited."""
        if (code := self.process.poll()) is not None:
            raise StartupError(f"{self.component.name} exited with {code}:\n{self.tail()}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _is_ready(component: Component) -> bool:
    if component.ready_url:
        try:
            return httpx.get(component.ready_url, timeout=1.0).is_success
        except httpx.HTTPError:
            return False
    if component.ready_port:
        return port_in_use(component.ready_port)
    return True


class _NotReady(Exception):
    """Some components do not answer yet (their names are the message)."""


def _check_ready(pending: list[Running]) -> None:
    """Drop the components that are ready from `pending`; raise if any is left."""
    for item in list(pending):
        item.raise_if_exited()
        if _is_ready(item.component):
            log.info("%s is ready", item.component.name)
            pending.remove(item)
    if pending:
        raise _NotReady(", ".join(item.component.name for item in pending))


class Supervisor:
    def __init__(
        self, log_dir: Path, *, base_env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.log_dir = log_dir
        self.base_env = dict(os.environ if base_env is None else base_env)
        # Components run from here (the data folder): whatever one writes to its working
        # directory (Ray jobs and replicas inherit it) stays out of the repository.
        self.cwd = cwd or log_dir
        self.running: list[Running] = []

    def start(self, component: Component) -> Running:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{component.name}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                component.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.base_env, **component.env},
                cwd=self.cwd,
                # A process group of its own, for its stop, in the supervisor's session:
                # where the kernel shares the CPU between sessions first, a session of
                # its own would count as much as all the rest (serving included), and
                # a niceness only within it.
                process_group=0,
                preexec_fn=functools.partial(_prepare_child, component.niceness),
            )
        running = Running(component, process, log_path)
        self.running.append(running)
        log.info("started %s (pid %d), log %s", component.name, process.pid, log_path)
        return running

    def wait_ready(self, items: Iterable[Running], timeout: float) -> None:
        """Poll until every component is ready; raise if one exits or time runs out."""
        pending = list(items)
        try:
            for attempt in backoff_blocking(on=(_NotReady,), first=0.1, cap=1.0, within=timeout):
                with attempt:
                    _check_ready(pending)
        except _NotReady as exc:
            raise StartupError(f"not ready after {timeout:.0f}s: {exc}") from None

    def check_running(self) -> None:
        """Raise StartupError for the first component that has exited."""
        for running in self.running:
            running.raise_if_exited()

    def first_exited(self) -> Running | None:
        return next((r for r in self.running if r.process.poll() is not None), None)

    def stop(self, running: Running, grace: float = 20.0) -> None:
        process = running.process
        tree = _descendants(process.pid)
        if process.poll() is None:
            # The leader first: it stops its own children in order (ray start tears down
            # raylet, GCS and dashboard; signalling them all at once can hang it).
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s did not stop in %.0fs; killing it. The end of its log (%s):\n%s",
                    running.component.name,
                    grace,
                    running.log_path,
                    running.tail(),
                )
        # Kill whatever the group still holds (workers that outlived their parent).
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        for leftover in tree:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        psutil.wait_procs(tree, timeout=5)
        if running in self.running:
            self.running.remove(running)
        log.info("stopped %s", running.component.name)

    def stop_all(self) -> None:
        for running in reversed(list(self.running)):
            self.stop(running)


def _prepare_child(niceness: int) -> None:
    """In the child, before exec: at `niceness` (the process alone: its session is the
    platform's); get SIGTERM if the supervisor dies, even by SIGKILL (Linux only;
    elsewhere a killed supervisor can leave components running)."""
    if niceness:
        lower_priority(niceness)
    if sys.platform == "linux":
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
