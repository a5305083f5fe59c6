"""Training yields the CPU to serving: its niceness is set, never pushed further."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.ml.niceness import session_group_niceness

CHECK = """
import os, sys
from mlops.ml.niceness import yield_to_serving
os.nice(int(sys.argv[1]))
yield_to_serving(int(sys.argv[2]))
yield_to_serving(int(sys.argv[2]))
print(os.getpriority(os.PRIO_PROCESS, 0))
"""


@pytest.mark.parametrize(
    ("started_at", "asked", "expected"),
    [
        (0, 10, 10),  # a process started plainly: set, once however often asked
        (10, 10, 10),  # a job's process started under `nice -n 10`: not pushed to 19
        (15, 10, 15),  # already nicer than asked: left alone
    ],
)
def test_a_training_process_runs_at_the_training_niceness(
    started_at: int, asked: int, expected: int
) -> None:
    found = subprocess.run(
        [sys.executable, "-c", CHECK, str(started_at), str(asked)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(found) == expected


# Where the kernel groups processes by session, niceness counts only within the group.
SESSION_GROUP = Path("/proc/self/autogroup")
needs_session_groups = pytest.mark.skipif(
    not SESSION_GROUP.exists(), reason="this kernel does not group processes by session"
)
GROUP_NICENESS = """
import sys
from mlops.ml.niceness import yield_to_serving
yield_to_serving(int(sys.argv[1]))
print(open("/proc/self/autogroup").read(), end="")
"""


@needs_session_groups
def test_a_process_leading_its_session_sets_the_sessions_niceness() -> None:
    """As Ray starts a job's entrypoint: in a session of its own, under `sh -c`."""
    script = shlex.join([sys.executable, "-c", GROUP_NICENESS, "10"])
    found = subprocess.run(
        ["sh", "-c", f"{script}; true"],  # `; true`: sh stays the parent, the leader
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    ).stdout
    assert session_group_niceness(found) == 10


@needs_session_groups
def test_a_process_in_a_shared_session_leaves_the_sessions_niceness() -> None:
    """As a Ray worker: its session is the raylet's, serving's too. This session may be
    the kernel's default group, which shows nothing: left alone all the same."""
    before = SESSION_GROUP.read_text()
    script = shlex.join([sys.executable, "-c", GROUP_NICENESS, "10"])
    found = subprocess.run(
        ["sh", "-c", f"{script}; true"], capture_output=True, text=True, check=True
    ).stdout
    assert found == before
    assert SESSION_GROUP.read_text() == before


@pytest.mark.parametrize(
    ("shown", "niceness"),
    [
        ("/autogroup-42 nice 0\n", 0),
        ("/autogroup-7 nice 10\n", 10),
        ("", None),  # the kernel's default group, as a container's first session
    ],
)
def test_a_session_groups_niceness_is_read_from_what_the_kernel_shows(
    shown: str, niceness: int | None
) -> None:
    assert session_group_niceness(shown) == niceness
