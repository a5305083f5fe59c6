"""The settings object: defaults, environment, and refusing example secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mlops.settings import Settings


def test_settings_read_the_mlops_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_MODEL_NAME", "churn")
    monkeypatch.setenv("MLOPS_ACCURACY_THRESHOLD", "0.75")

    settings = Settings()

    assert settings.model_name == "churn"
    assert settings.accuracy_threshold == 0.75


def test_dataset_defaults_to_an_absolute_path_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "state")

    assert settings.dataset_uri == str(tmp_path / "state" / "iris.csv")
    assert Path(settings.dataset_uri).is_absolute()


def test_production_refuses_an_example_secret() -> None:
    with pytest.raises(ValidationError, match="MLOPS_S3_SECRET_ACCESS_KEY"):
        Settings(environment="production", s3_secret_access_key="minioadmin")


def test_job_environment_leaves_secrets_out() -> None:
    settings = Settings(redis_password="s3cret-pw", s3_secret_access_key="another-one")

    job_env = settings.as_env(include_secrets=False)
    process_env = settings.as_env(include_secrets=True)

    assert "MLOPS_REDIS_PASSWORD" not in job_env
    assert "MLOPS_S3_SECRET_ACCESS_KEY" not in job_env
    assert process_env["MLOPS_REDIS_PASSWORD"] == "s3cret-pw"
    assert job_env["MLOPS_MODEL_NAME"] == "mlops_model"
