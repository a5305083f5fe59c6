"""The local platform's folder under /tmp, for Ray's sessions and Serve's HAProxy.

Both need short paths (Unix sockets live there), so they cannot go in the data folder.
/tmp is shared by every user of the machine, and what Ray and HAProxy put there is open
to all: Ray makes its folders writable by anyone, and HAProxy's admin socket (which can
redirect Serve's traffic) accepts anyone's connection. So every platform's folder sits
in one folder per user, `/tmp/mlops-<uid>`, that only its owner can enter, as tmux and
ssh-agent do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from mlops.settings.platform import PlatformSettings

TMP = Path("/tmp")


class UnsafeScratchFolder(RuntimeError):
    """The user's folder under /tmp exists, but is not a private folder of theirs."""


def user_folder(tmp: Path = TMP) -> Path:
    return tmp / f"mlops-{os.getuid()}"


def platform_folder(settings: PlatformSettings, tmp: Path = TMP) -> Path:
    """One per data folder, so two clones of one user can run at once. Short: HAProxy's
    admin socket ends up 63 characters below it (`hap/<node id>/admin`), and its path
    must stay under 98 characters (bind adds a suffix), even for a ten-digit uid."""
    digest = hashlib.sha256(str(settings.data_dir).encode()).hexdigest()[:6]
    return user_folder(tmp) / digest


def temp_folder(settings: PlatformSettings, tmp: Path = TMP) -> Path:
    """Ray's processes' TMPDIR. What they leave behind there (the socket folder of the
    Ray dashboard's forkserver, once per run) goes at the next start (`leftovers`)
    instead of piling up in /tmp."""
    return platform_folder(settings, tmp) / "tmp"


def prepare(settings: PlatformSettings, tmp: Path = TMP) -> Path:
    """Make the platform's folder, inside the user's private one; refuse a user folder
    that someone else made or that others could write to."""
    folder = user_folder(tmp)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    found = folder.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise UnsafeScratchFolder(
            f"{folder} is not a folder of yours (another user's, or a link): Ray's and"
            " HAProxy's files in it would be open to others. Have it removed (by its owner"
            " or an administrator) and start again."
        )
    if found.st_mode & 0o022:
        raise UnsafeScratchFolder(
            f"{folder} can be written by other users (mode {stat.filemode(found.st_mode)}):"
            f" what is in it may have been changed. Remove it (`rm -rf {folder}`) and start"
            " again."
        )
    if found.st_mode & 0o077:
        folder.chmod(0o700)  # readable by others, never writable: closed from now on
    ours = platform_folder(settings, tmp)
    ours.mkdir(exist_ok=True)
    return ours
