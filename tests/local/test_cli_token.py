"""Which API token `mlops` sends, and to which API."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import NOBODY, as_user

from mlops.cli.http import token


def test_the_token_make_up_kept_goes_to_an_api_on_this_machine_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api-token").write_text("kept-token\n")
    monkeypatch.delenv("MLOPS_API_TOKEN", raising=False)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))

    for local in ("http://127.0.0.1:8888", "http://localhost:8888", "http://[::1]:8888"):
        assert token(local) == "kept-token"
    for elsewhere in ("https://mlops.example.com", "http://10.0.0.5:8888"):
        assert token(elsewhere) is None
    monkeypatch.setenv("MLOPS_API_TOKEN", "given")
    assert token("https://mlops.example.com") == "given"  # the user's own choice


def _token_seen(api_url: str) -> tuple[str | None, str]:
    """What `token` returns, and what it told the user."""
    told = io.StringIO()
    with contextlib.redirect_stderr(told):
        return token(api_url), told.getvalue()


@pytest.mark.skipif(os.getuid() != 0, reason="only root can keep a token another user meets")
def test_a_token_kept_by_another_user_is_not_sent_and_the_user_is_told_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="mlops-token-"))
    data_dir.chmod(0o755)  # as `sudo make up` leaves a clone's data folder
    kept = data_dir / "api-token"
    kept.write_text("root's token\n")
    kept.chmod(0o600)
    monkeypatch.delenv("MLOPS_API_TOKEN", raising=False)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(data_dir))
    try:
        sent, told = as_user(NOBODY, lambda: _token_seen("http://127.0.0.1:8888"))
    finally:
        shutil.rmtree(data_dir)

    assert sent is None
    assert told.startswith(f"warning: {kept} is not yours to read (another user's `make up`)")
