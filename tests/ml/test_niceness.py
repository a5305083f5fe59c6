"""Training yields the CPU to serving: its niceness is set, never pushed further."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
        (10, 10, 10),  # an entrypoint started under `nice -n 10`: not pushed to 19
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
