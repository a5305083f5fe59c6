"""The settings of each runtime: defaults, environment, what travels to jobs and
replicas, and refusing example secrets."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import cloudpickle  # type: ignore[import-untyped]
import pytest
from pydantic import SecretStr, ValidationError

from mlops.local.platform import with_api_token
from mlops.settings.api import ApiSettings
from mlops.settings.base import RuntimeSettings
from mlops.settings.platform import PlatformSettings
from mlops.settings.reference import reference_markdown
from mlops.settings.serving import ServingSettings
from mlops.settings.training import TrainingSettings


@pytest.mark.parametrize("runtime", [TrainingSettings, ApiSettings, PlatformSettings])
def test_every_runtime_reads_the_mlops_prefix(
    monkeypatch: pytest.MonkeyPatch, runtime: type[TrainingSettings]
) -> None:
    monkeypatch.setenv("MLOPS_MODEL_NAME", "churn")
    monkeypatch.setenv("MLOPS_TEST_SIZE", "0.3")

    settings = runtime()

    assert settings.model_name == "churn"
    assert settings.test_size == 0.3


def test_the_default_models_gate_is_read_by_the_api_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_ACCURACY_THRESHOLD", "0.75")

    assert ApiSettings().accuracy_threshold == 0.75
    assert (
        "accuracy_threshold" not in TrainingSettings.model_fields
    )  # jobs get the gate in their spec


def test_each_runtime_holds_only_its_own_settings() -> None:
    serving = set(ServingSettings.model_fields)
    training = set(TrainingSettings.model_fields)
    api = set(ApiSettings.model_fields)

    assert set(RuntimeSettings.model_fields) == serving & training
    assert "serve_reload_seconds" in serving and "serve_reload_seconds" not in training
    assert "test_size" in training and "test_size" not in serving
    assert not {"api_token", "cors_origins", "ray_address"} & (serving | training)
    assert "api_port" not in api and serving | training <= api
    assert api <= set(PlatformSettings.model_fields)


def test_a_job_and_a_replica_are_given_only_their_runtimes_settings() -> None:
    api = ApiSettings(api_token="t" * 32, redis_password="s3cret-pw")

    job_env = api.as_env(include_secrets=False, runtime=TrainingSettings)
    replica_env = api.as_env(include_secrets=False, runtime=ServingSettings)

    assert job_env.keys() == {
        f"MLOPS_{name.upper()}"
        for name, value in TrainingSettings.model_fields.items()
        if name not in TrainingSettings._per_process_fields() and getattr(api, name) is not None
    }
    assert "MLOPS_TEST_SIZE" in job_env and "MLOPS_TEST_SIZE" not in replica_env
    assert "MLOPS_SERVE_RELOAD_SECONDS" in replica_env
    assert not {"MLOPS_API_TOKEN", "MLOPS_CORS_ORIGINS", "MLOPS_REDIS_PASSWORD"} & (
        job_env.keys() | replica_env.keys()
    )
    with pytest.raises(TypeError, match="ServingSettings does not hold TrainingSettings"):
        ServingSettings().as_env(include_secrets=False, runtime=TrainingSettings)


def test_dataset_defaults_to_an_absolute_path_in_the_data_dir(tmp_path: Path) -> None:
    settings = TrainingSettings(data_dir=tmp_path / "state")

    assert settings.dataset_uri == str(tmp_path / "state" / "iris.csv")
    assert Path(settings.dataset_uri).is_absolute()


def test_production_refuses_an_example_secret() -> None:
    with pytest.raises(ValidationError, match="MLOPS_S3_SECRET_ACCESS_KEY"):
        TrainingSettings(
            environment="production", s3_secret_access_key="minioadmin", model_signing_key="k" * 32
        )


@pytest.mark.parametrize("key", [None, "short"])
@pytest.mark.parametrize("runtime", [TrainingSettings, ServingSettings, ApiSettings])
def test_production_needs_a_signing_key_of_32_characters(
    key: str | None, runtime: type[RuntimeSettings]
) -> None:
    with pytest.raises(ValidationError, match="MLOPS_MODEL_SIGNING_KEY"):
        runtime(environment="production", model_signing_key=key)


def test_a_search_budget_must_leave_time_before_the_job_limit() -> None:
    with pytest.raises(ValidationError, match="MLOPS_TUNE_TIME_BUDGET_SECONDS"):
        ApiSettings(tune_time_budget_seconds=600, job_max_seconds=600)


def test_job_environment_leaves_secrets_out() -> None:
    settings = ApiSettings(redis_password="s3cret-pw", s3_secret_access_key="another-one")

    job_env = settings.as_env(include_secrets=False, runtime=TrainingSettings)
    process_env = settings.as_env(include_secrets=True)

    assert "MLOPS_REDIS_PASSWORD" not in job_env
    assert "MLOPS_REDIS_USERNAME" not in ApiSettings(redis_username="api").as_env(
        include_secrets=False, runtime=TrainingSettings
    )
    assert "MLOPS_S3_SECRET_ACCESS_KEY" not in job_env
    assert process_env["MLOPS_REDIS_PASSWORD"] == "s3cret-pw"
    assert job_env["MLOPS_MODEL_NAME"] == "mlops_model"


def test_settings_from_a_jobs_variables_take_secrets_only_from_the_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The warm trainer's view of a job: what the job's API set, nothing left over from
    the job that started the trainer, and secrets from the trainer's own node."""
    job = ApiSettings(
        data_dir=tmp_path, model_name="churn", redis_username="api", redis_password="from-the-api"
    )
    monkeypatch.setenv("MLOPS_REDIS_USERNAME", "ray")
    monkeypatch.setenv("MLOPS_REDIS_PASSWORD", "from-the-node")
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", "http://left-over:9000")  # an earlier job's

    seen = TrainingSettings.from_env(job.as_env(include_secrets=False, runtime=TrainingSettings))

    assert isinstance(seen, TrainingSettings)
    assert seen.model_name == "churn" and seen.data_dir == tmp_path.resolve()
    assert seen.s3_endpoint_url is None
    assert seen.redis_password is not None
    assert seen.redis_password.get_secret_value() == "from-the-node"
    assert seen.redis_username == "ray"  # the node's Redis user, never the API's


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_pickled_settings_carry_no_secret_and_take_the_unpickling_processs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dumps: Callable[[object], bytes]
) -> None:
    # As a search's saved state (Tune's tuner.pkl) holds the settings of its job.
    trainer = TrainingSettings.from_env({"MLOPS_DATA_DIR": str(tmp_path)})
    held = trainer.model_copy(
        update={
            "model_signing_key": SecretStr("signing-key-" + "k" * 30),
            "redis_password": SecretStr("redis-password-on-the-node"),
        }
    )

    pickled = dumps(held)

    assert b"signing-key-" not in pickled and b"redis-password-on" not in pickled
    monkeypatch.setenv("MLOPS_REDIS_PASSWORD", "where-it-is-unpickled")
    back = pickle.loads(pickled)
    assert isinstance(back, TrainingSettings) and back.data_dir == tmp_path.resolve()
    assert back.redis_password == SecretStr("where-it-is-unpickled")
    assert back.model_signing_key is None


def test_dataset_locations_default_to_the_data_folder_and_the_datasets_bucket(
    tmp_path: Path,
) -> None:
    local = ApiSettings(data_dir=tmp_path)
    cluster = ApiSettings(data_dir=tmp_path, dataset_uri="s3://mlops/datasets/iris.csv")
    given = ApiSettings(dataset_locations="/srv/data, s3://lake/ml/")

    assert local.dataset_locations == [str(tmp_path.resolve())]
    assert cluster.dataset_locations == [str(tmp_path.resolve()), "s3://mlops/"]
    assert given.dataset_locations == ["/srv/data", "s3://lake/ml/"]


def test_the_configuration_doc_lists_every_setting_as_the_code_defines_it() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()

    assert doc == reference_markdown(), "docs/configuration.md is stale: run `make docs`"
    for name in PlatformSettings.model_fields:
        assert doc.count(f"`MLOPS_{name.upper()}`") == 1, f"MLOPS_{name.upper()} listed once"


def test_make_up_keeps_one_private_api_token_across_restarts(tmp_path: Path) -> None:
    settings = PlatformSettings(data_dir=tmp_path)

    first = with_api_token(settings)
    second = with_api_token(settings)
    own = SecretStr("set-by-the-user-123")
    given = with_api_token(settings.model_copy(update={"api_token": own}))

    kept = tmp_path / "api-token"
    assert first.api_token and second.api_token and given.api_token
    assert first.api_token.get_secret_value() == second.api_token.get_secret_value()
    assert len(first.api_token.get_secret_value()) >= 32
    assert kept.stat().st_mode & 0o777 == 0o600
    assert given.api_token.get_secret_value() == "set-by-the-user-123"
