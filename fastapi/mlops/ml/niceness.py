"""Training yields the CPU to serving where the two share a node."""

from __future__ import annotations

import os

# Linux's session groups (CONFIG_SCHED_AUTOGROUP): with them on, CPU is shared between
# sessions first and niceness counts only within a session.
_SESSION_GROUP = "/proc/self/autogroup"


def yield_to_serving(niceness: int) -> None:
    """This process at `niceness` at least. Absolute, not an increment: a job's
    entrypoint and Ray's workers for its job already run under `nice` (the job's
    Python, services/training.py), from before they import anything, and are not
    pushed further.

    Ray starts a job's entrypoint in a session of its own (`sh -c`, then this process).
    Where the kernel groups processes by session, that session would take as much CPU as
    all of Ray's processes together, serving included, whatever this process's niceness:
    so the session's group gets the niceness too, when this process or its parent leads
    the session (never a session it shares with others, such as a Ray worker's)."""
    lower_priority(niceness)
    if os.getsid(0) in (os.getpid(), os.getppid()):
        _session_group_at(niceness)


def lower_priority(niceness: int) -> None:
    """This process, and not its session's group, at `niceness` at least."""
    if os.getpriority(os.PRIO_PROCESS, 0) < niceness:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def _session_group_at(niceness: int) -> None:
    try:
        with open(_SESSION_GROUP, "r+") as group:
            current = session_group_niceness(group.read())
            if current is not None and current < niceness:
                group.seek(0)
                group.write(str(niceness))
    except OSError:
        pass  # no session groups here (kernel, container), or raising it was refused


def session_group_niceness(shown: str) -> int | None:
    """The niceness in `/proc/<pid>/autogroup`'s text ("/autogroup-42 nice 0"), or None
    where it shows nothing: a process in the kernel's default group, which sessions
    started at boot (a container's first process's, say) share and nothing should
    renice."""
    fields = shown.split()
    if len(fields) != 3 or fields[1] != "nice":
        return None
    return int(fields[2])
