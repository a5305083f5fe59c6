"""Where the machine's CPU went during a window, per process: the CPU seconds it used
(all its threads), and the seconds its main thread waited, runnable, for a CPU that
another process had, with the niceness that decides who waits. Read from Linux's
/proc twice a second, so a process that ended in the window is counted up to its last
reading. Elsewhere nothing is reported.

    with CpuShare() as share:
        ...                       # the window
    share.report("with trainings")
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Self

PROC = Path("/proc")
EVERY_S = 0.5
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclasses.dataclass(frozen=True)
class Usage:
    name: str
    started: int  # clock ticks after boot: with the pid, which process it is
    niceness: int
    cpu_s: float
    waited_s: float  # the main thread's runnable time without a CPU


def _snapshot() -> dict[int, Usage]:
    found = {}
    for entry in PROC.glob("[0-9]*"):
        try:
            found[int(entry.name)] = _usage(entry)
        except (OSError, ValueError, IndexError):
            continue  # it ended meanwhile, or is not ours to read
    return found


def _usage(entry: Path) -> Usage:
    stat = (entry / "stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    _, wait_ns, _ = (entry / "schedstat").read_text().split()
    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    name = command.strip()[:100] or stat[stat.index("(") + 1 : stat.rindex(")")]
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return Usage(name, int(fields[19]), int(fields[16]), cpu, int(wait_ns) / 1e9)


class CpuShare:
    """Each process's use in a window: from its reading at the start (or from zero,
    for one started in it) to its last reading."""

    def __init__(self) -> None:
        self._first: dict[int, Usage] = {}
        self._last: dict[int, Usage] = {}
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Self:
        if PROC.joinpath("self", "schedstat").exists():
            self._first = self._last = _snapshot()
            self._reader.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        if self._reader.is_alive():
            self._reader.join()
            self._last = {**self._last, **_snapshot()}

    def _read(self) -> None:
        while not self._done.wait(EVERY_S):
            self._last = {**self._last, **_snapshot()}

    def busiest(self, top: int = 8) -> list[Usage]:
        spent = []
        for pid, last in self._last.items():
            first = self._first.get(pid)
            if first is not None and first.started != last.started:
                first = None  # the pid was reused
            cpu = last.cpu_s - (first.cpu_s if first else 0.0)
            waited = last.waited_s - (first.waited_s if first else 0.0)
            spent.append(dataclasses.replace(last, cpu_s=cpu, waited_s=waited))
        return sorted(spent, key=lambda usage: -usage.cpu_s)[:top]

    def report(self, title: str) -> None:
        if not self._last:
            return
        print(f"  {title}: per process, CPU seconds used and its main thread's wait")
        for usage in self.busiest():
            print(
                f"    {usage.cpu_s:6.2f} used {usage.waited_s:6.2f} waited  "
                f"nice {usage.niceness:>3}  {usage.name}"
            )
