"""The platform's folder under /tmp: private to its user, short enough for the sockets."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlops.local import components, leftovers, scratch
from mlops.local.scratch import UnsafeScratchFolder
from mlops.settings.platform import PlatformSettings

# Ray adds a folder named by the node's id (56 hex digits) to each of HAProxy's paths.
NODE_ID = "f" * 56
# HAProxy binds its admin socket at the path plus a suffix (".<pid>.tmp"), within the
# 108 bytes of a Unix socket's address.
HAPROXY_SOCKET_PATH_LIMIT = 98


@pytest.fixture()
def settings(tmp_path: Path) -> PlatformSettings:
    return PlatformSettings(data_dir=tmp_path / "data")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_platform_folder_is_inside_a_folder_only_its_user_can_enter(
    tmp_path: Path, settings: PlatformSettings
) -> None:
    ours = scratch.prepare(settings, tmp=tmp_path)

    user_folder = tmp_path / f"mlops-{os.getuid()}"
    assert ours.parent == user_folder
    assert _mode(user_folder) == 0o700
    assert ours.is_dir()
    assert scratch.prepare(settings, tmp=tmp_path) == ours  # the next start finds it


def test_two_data_folders_get_two_platform_folders(tmp_path: Path) -> None:
    one = scratch.prepare(PlatformSettings(data_dir=tmp_path / "one"), tmp=tmp_path)
    other = scratch.prepare(PlatformSettings(data_dir=tmp_path / "other"), tmp=tmp_path)

    assert one != other and one.parent == other.parent


def test_a_user_folder_others_can_write_to_is_refused_saying_what_to_do(
    tmp_path: Path, settings: PlatformSettings
) -> None:
    user_folder = tmp_path / f"mlops-{os.getuid()}"
    user_folder.mkdir()
    user_folder.chmod(0o777)

    with pytest.raises(
        UnsafeScratchFolder, match=f"can be written by other users.*rm -rf {user_folder}"
    ):
        scratch.prepare(settings, tmp=tmp_path)

    assert not any(user_folder.iterdir())


def test_a_user_folder_others_can_only_read_is_closed(
    tmp_path: Path, settings: PlatformSettings
) -> None:
    user_folder = tmp_path / f"mlops-{os.getuid()}"
    user_folder.mkdir(mode=0o755)

    scratch.prepare(settings, tmp=tmp_path)

    assert _mode(user_folder) == 0o700


def test_a_link_in_place_of_the_user_folder_is_refused(
    tmp_path: Path, settings: PlatformSettings
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / f"mlops-{os.getuid()}").symlink_to(elsewhere)

    with pytest.raises(UnsafeScratchFolder, match="not a folder of yours"):
        scratch.prepare(settings, tmp=tmp_path)

    assert not any(elsewhere.iterdir())


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a folder to another user")
def test_a_user_folder_another_user_made_is_refused(
    tmp_path: Path, settings: PlatformSettings
) -> None:
    user_folder = tmp_path / f"mlops-{os.getuid()}"
    user_folder.mkdir(mode=0o700)
    os.chown(user_folder, 1000, 1000)

    with pytest.raises(UnsafeScratchFolder, match="not a folder of yours"):
        scratch.prepare(settings, tmp=tmp_path)


def test_ray_and_haproxy_keep_every_file_in_the_platform_folder(
    settings: PlatformSettings,
) -> None:
    ours = scratch.platform_folder(settings)
    ray = components.ray_head(settings)
    temp_dir = Path(ray.command[ray.command.index("--temp-dir") + 1])

    assert temp_dir.parent == ours
    haproxy_paths = [
        value for name, value in ray.env.items() if name.startswith("RAY_SERVE_HAPROXY_")
    ]
    # Those Ray would otherwise put in /tmp/haproxy-serve, shared by every user.
    placed = [value for value in haproxy_paths if value.startswith("/")]
    assert len(placed) == 5, haproxy_paths
    assert all(Path(value).is_relative_to(ours) for value in placed)
    assert Path(ray.env["TMPDIR"]).parent == ours  # their temporary files too


def test_what_ray_left_in_its_temporary_folder_goes_at_the_next_start(
    tmp_path: Path, settings: PlatformSettings
) -> None:
    scratch.prepare(settings, tmp=tmp_path)
    leftovers.empty_ray_temp_folder(settings, tmp=tmp_path)
    left = scratch.temp_folder(settings, tmp=tmp_path) / "pymp-abc" / "listener-def"
    left.parent.mkdir()
    left.write_text("")

    leftovers.empty_ray_temp_folder(settings, tmp=tmp_path)

    assert not any(scratch.temp_folder(settings, tmp=tmp_path).iterdir())


def test_haproxy_s_admin_socket_path_fits_even_for_a_ten_digit_uid(
    settings: PlatformSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 4_294_967_294)
    ray = components.ray_head(settings)
    configured = Path(ray.env["RAY_SERVE_HAPROXY_SOCKET_PATH"])
    admin_socket = configured.parent / NODE_ID / configured.name

    assert str(admin_socket).startswith("/tmp/mlops-4294967294/")
    assert len(str(admin_socket)) < HAPROXY_SOCKET_PATH_LIMIT, admin_socket
