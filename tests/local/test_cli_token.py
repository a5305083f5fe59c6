"""Which API token `mlops` sends, and to which API."""

from __future__ import annotations

from pathlib import Path

import pytest

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
