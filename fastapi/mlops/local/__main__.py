"""`python -m mlops.local up|down`: the local platform behind `make up` and `make down`."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import pwd
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from mlops import logs
from mlops.local import components
from mlops.local.platform import (
    LocalPlatform,
    should_embed_redis,
    with_api_token,
)
from mlops.local.scratch import UnsafeScratchFolder
from mlops.local.supervisor import StartupError, port_in_use
from mlops.settings.base import API_TOKEN_FILE
from mlops.settings.platform import PlatformSettings

log = logging.getLogger("mlops.local")


def _pid_file(settings: PlatformSettings) -> Path:
    return settings.data_dir / "platform.pid"


def _alive(pid: int) -> bool:
    """True while pid is a running local platform (not a zombie, not a reused pid)."""
    try:
        process = psutil.Process(pid)
        parts = process.cmdline()
        command = " ".join(parts)
        cli_up = "up" in parts and any(Path(part).name == "mlops" for part in parts)
        is_platform = cli_up or "mlops.local" in command or "mlops-local" in command
        return process.status() != psutil.STATUS_ZOMBIE and is_platform
    except psutil.Error:
        return False


def _running_pid(settings: PlatformSettings) -> int | None:
    try:
        pid = int(_pid_file(settings).read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _announce(
    settings: PlatformSettings, urls: dict[str, str], outputs: Path, *, seconds: float
) -> None:
    """The URLs, in outputs/urls.txt and the log, with the API token and where logs go."""
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / "urls.txt").write_text("".join(f"{name}: {url}\n" for name, url in urls.items()))
    width = max(map(len, urls))
    lines = "\n".join(f"  {name:<{width}}  {url}" for name, url in urls.items())
    assert settings.api_token is not None
    token = settings.api_token.get_secret_value()
    dashboard = (
        f"\nOpen the dashboard with the token: {urls['Dashboard']}/#token={token}"
        if ("Dashboard" in urls)
        else ""
    )
    log.info(
        "platform ready in %.0fs:\n%s\nAPI token for writes (Authorization: Bearer …): %s"
        " (kept in %s)%s\nThe Ray dashboard asks for Ray's token: %s.\n"
        "Logs in %s, Ray's in %s. Ctrl-C or `make down` stops it.",
        seconds,
        lines,
        token,
        settings.data_dir / API_TOKEN_FILE,
        dashboard,
        settings.data_dir / "ray-token",
        settings.data_dir / "logs",
        components.ray_logs_dir(settings),
    )


class StopRequested(BaseException):
    """Ctrl-C or `make down` while the platform starts. A BaseException, as
    KeyboardInterrupt is, so that no wait of the start catches it: the start then stops
    every component it began."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_stop_signals(handler: Callable[[int, Any], None]) -> None:
    """Ctrl-C, `make down` and a closed terminal stop the platform; under `nohup` (the
    hang-up ignored) closing the terminal leaves it running."""
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, handler)


def claim_pid_file(path: Path) -> int | None:
    """Lock `path` for as long as this process runs, with its pid in it; None if another
    process holds it. The lock, which the kernel releases however the process ends, makes
    a second `make up` of the same data folder stop here, even one started in the same
    instant as the first."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        os.close(fd)  # the platform that held it removed it as it stopped: open it anew


def _data_dir_mode(data_dir: Path) -> int:
    """The data folder holds the tokens, models, datasets and recorded predictions: made
    for its user alone, in a folder of theirs. In another user's clone (`sudo make up`)
    the dashboard's nginx workers run as the clone's owner and write their temporary
    files in it: left open to them there."""
    parent = data_dir.parent
    return 0o700 if parent.is_dir() and parent.stat().st_uid == os.getuid() else 0o755


def _name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a name (a container's, say)
        return None


def _who(uid: int) -> str:
    return _name(uid) or f"uid {uid}"


def _sudo_as(uid: int) -> str:
    return f"sudo -u {_name(uid) or repr(f'#{uid}')}"  # sudo takes a bare uid as '#uid'


def refused_data_dir(data_dir: Path, uid: int | None = None) -> str | None:
    """Why user `uid` (this process's by default) cannot run the platform of `data_dir`,
    or None: the folder belongs to another user, who ran `make up` there (often with
    sudo), and its tokens are theirs alone. Root may run anyone's."""
    uid = os.getuid() if uid is None else uid
    owner = data_dir.stat().st_uid
    if uid in (0, owner):
        return None
    return (
        f"{data_dir} belongs to {_who(owner)}, who ran `make up` with it; its tokens are"
        f" theirs alone. Run it as {_who(owner)} (`{_sudo_as(owner)} make up`), or make"
        f" the folder yours: `sudo chown -R {_name(uid) or uid} {data_dir}`"
    )


def up(settings: PlatformSettings, outputs: Path) -> int:
    settings.data_dir.mkdir(mode=_data_dir_mode(settings.data_dir), parents=True, exist_ok=True)
    if refused := refused_data_dir(settings.data_dir):
        log.error("%s", refused)
        return 1
    pid_file = _pid_file(settings)
    running = _running_pid(settings)
    claimed = None if running else claim_pid_file(pid_file)
    if claimed is None:
        log.error(
            "the platform is already running or starting (pid %s); `make down` stops it",
            # With none running, the claim lost to a start of the same instant.
            running or _running_pid(settings) or "unknown",
        )
        return 1
    try:  # from here `make down` reaches it
        return _run(with_api_token(settings), outputs)
    finally:
        pid_file.unlink(missing_ok=True)
        os.close(claimed)


def _run(settings: PlatformSettings, outputs: Path) -> int:
    """Start the platform, then watch it until a signal asks it to stop or a component
    exits. A signal during the start interrupts the start."""
    platform = LocalPlatform(settings, embed_redis=should_embed_redis(settings))
    asked: list[int] = []

    def ask_to_stop(signum: int, _frame: Any) -> None:
        asked.append(signum)

    def interrupt_start(signum: int, _frame: Any) -> None:
        _on_stop_signals(ask_to_stop)  # a second Ctrl-C does not cut the stop short
        raise StopRequested(signum)

    _on_stop_signals(interrupt_start)
    started = time.monotonic()
    try:
        platform.start()  # on any exception it stops the components it started
        _on_stop_signals(ask_to_stop)
    except (StartupError, UnsafeScratchFolder, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 1
    except StopRequested as stop:
        log.info("stopped during its start (%s)", stop)
        platform.stop()  # in case the signal came just after the start
        return 128 + stop.signum
    _announce(settings, platform.urls(), outputs, seconds=time.monotonic() - started)
    code = 0
    try:
        while not asked:
            if exited := platform.supervisor.first_exited():
                log.error(
                    "%s exited with %s; stopping the platform. Last lines of its log:\n%s",
                    exited.component.name,
                    exited.process.returncode,
                    exited.tail(),
                )
                code = 1
                break
            time.sleep(0.5)
    finally:
        log.info("stopping the platform")
        platform.stop()
    return code


def down(settings: PlatformSettings, timeout: float = 60.0) -> int:
    pid = _running_pid(settings)
    if pid is None and port_in_use(settings.api_port, settings.api_host):
        log.error(
            "no platform was started with the data folder %s, but something listens on"
            " the API's port %d: run `make down` in the clone that started it",
            settings.data_dir.resolve(),
            settings.api_port,
        )
        return 1
    if pid is None:
        log.info("the platform is not running")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except PermissionError:
        owner = psutil.Process(pid).uids().real
        log.error(
            "the platform (pid %d) runs as %s: `%s make down`", pid, _who(owner), _sudo_as(owner)
        )
        return 1
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            log.error("pid %d did not stop within %.0fs", pid, timeout)
            return 1
        time.sleep(0.2)
    log.info("the platform is stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-local", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="where urls.txt goes")
    args = parser.parse_args(argv)
    logs.configure("console")
    settings = PlatformSettings()
    return up(settings, args.outputs) if args.command == "up" else down(settings)


if __name__ == "__main__":
    sys.exit(main())
