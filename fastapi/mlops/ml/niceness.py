"""Training yields the CPU to serving where the two share a node."""

from __future__ import annotations

import os


def yield_to_serving(niceness: int) -> None:
    """This process at `niceness` at least. Absolute, not an increment: a job's
    entrypoint already runs under `nice` (services/training.py), from before it imports
    anything, and is not pushed further."""
    if os.getpriority(os.PRIO_PROCESS, 0) < niceness:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
