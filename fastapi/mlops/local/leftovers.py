"""What the platform's earlier runs left, removed as it starts, in one step
(`forget_earlier_runs`), before any of its processes runs: its ports were free.

- Ray's sessions: a new one at each start, with its logs, which Ray never removes (in
  /tmp, often in memory). The newest few stay, for a look at the last runs after
  `make down`.
- Ray's processes' temporary files (their TMPDIR): the Ray dashboard's forkserver
  leaves its socket's folder there at every run.
- Searches' Tune folders: a search removes its own as it ends, but not one cut off by
  a stop; and searches before that left theirs, with the Redis password and the
  signing key in them (docs/security.md).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from mlops.local import components, scratch
from mlops.settings.platform import PlatformSettings

log = logging.getLogger(__name__)

RAY_SESSIONS_KEPT = 3


def forget_earlier_runs(settings: PlatformSettings) -> None:
    forget_old_ray_sessions(settings)
    empty_ray_temp_folder(settings)
    forget_ended_searches(settings)


def forget_old_ray_sessions(settings: PlatformSettings, keep: int = RAY_SESSIONS_KEPT) -> None:
    """All but the newest `keep` of the platform's Ray sessions."""
    temp_dir = components.ray_temp_dir(settings)
    sessions = sorted(p for p in temp_dir.glob("session_2*") if p.is_dir() and not p.is_symlink())
    for old in sessions[: max(len(sessions) - keep, 0)]:
        log.debug("removing Ray's session %s", old)
        shutil.rmtree(old, ignore_errors=True)


def empty_ray_temp_folder(settings: PlatformSettings, tmp: Path = scratch.TMP) -> None:
    folder = scratch.temp_folder(settings, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)


def forget_ended_searches(settings: PlatformSettings) -> None:
    if settings.tune_dir.is_dir():
        log.info("removing what ended searches left in %s", settings.tune_dir)
        shutil.rmtree(settings.tune_dir, ignore_errors=True)
