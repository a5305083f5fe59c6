"""The platform's one settings object, read from MLOPS_* environment variables.

Every host, port, name and credential the code uses comes from here; defaults are the
local platform's (`make up`), and the Kubernetes manifests override them.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# Credentials that ship as examples (MinIO's well-known default); never valid in production.
_EXAMPLE_SECRETS = {"minioadmin", "changeme", "secret", "password"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses example credentials, and an API without a token.",
    )

    # Where things are.
    api_host: str = Field("127.0.0.1", description="Interface the API listens on.")
    api_port: int = Field(8888, description="Port of the API (Swagger at /docs).")
    ray_address: str = Field(
        "http://127.0.0.1:8265", description="Ray dashboard URL: the Jobs and Serve REST APIs."
    )
    ray_gcs_port: int = Field(
        6385, description="Port of the local Ray head's GCS (kept off Redis's 6379)."
    )
    serve_url: str = Field("http://127.0.0.1:8000", description="Ray Serve HTTP proxy URL.")
    serve_bind_host: str = Field(
        "127.0.0.1", description="Interface Serve's proxy binds (0.0.0.0 in the cluster)."
    )
    serve_haproxy_stats_port: int = Field(
        8404, description="Port of Serve's HAProxy stats page (local Linux platform)."
    )
    serve_haproxy_metrics_port: int = Field(
        9101, description="Port of Serve's HAProxy Prometheus metrics (local Linux platform)."
    )
    ray_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs of the local Ray head (`make up`; default: the machine's, at"
        " least 4, so a training and Serve replicas share a laptop's cores).",
    )
    serve_replicas: int = Field(1, ge=1, description="Replicas of the model deployment.")
    serve_replica_cpus: float = Field(
        0.5,
        gt=0,
        le=16,
        description="CPUs each Serve replica reserves. Below one, so replicas leave CPUs to "
        "searches on a small cluster (a replica predicts on one thread either way); a search"
        " the cluster cannot place is refused with 409.",
    )
    serve_reload_seconds: float = Field(
        2.0, gt=0, description="How often replicas check which version is the champion."
    )
    serve_batch_rows: int = Field(
        64, ge=1, le=1024, description="Most rows the API sends to Serve in one call."
    )
    serve_calls_in_flight: int = Field(
        16, ge=1, le=64, description="Concurrent Serve calls per model version from one API."
    )
    auto_serve: bool = Field(
        True, description="Deploy the Serve application when a champion exists and it is down."
    )
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5555", description="MLflow tracking server URL."
    )
    mlflow_username: str | None = Field(
        None,
        description="MLflow user, where the tracking server requires authentication (the "
        "cluster's does); jobs and replicas use MLFLOW_TRACKING_USERNAME/PASSWORD.",
    )
    mlflow_password: SecretStr | None = Field(None, description="That user's password.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis-compatible server. Locally, setting it skips the embedded server.",
    )
    redis_username: str | None = Field(
        None,
        description="Redis user this process signs in as (unset: the default user). Like "
        "a secret it belongs to the process: jobs and replicas sign in as their Ray node's "
        "(`make up` and the cluster give the API `api` and Ray `ray`).",
        json_schema_extra={"per_process": True},
    )
    redis_password: SecretStr | None = Field(None, description="That user's password.")
    ray_auth_token: SecretStr | None = Field(
        None,
        description="Ray's token (Ray's RAY_AUTH_MODE=token): sent on every Jobs and Serve "
        "call. `make up` generates one (DATA_DIR/ray-token, mode 600), init.sh another.",
    )
    model_signing_key: SecretStr | None = Field(
        None,
        description="Key of the seal (HMAC-SHA256) the trainer puts on each version it "
        "registers; replicas, the trainer and the API load, score and promote only sealed "
        "versions. Required in production (init.sh generates one); `make up` keeps one in "
        "DATA_DIR/signing-key (mode 600).",
    )
    redis_max_connections: int = Field(
        64, ge=4, description="Redis connections per API process (requests wait for one)."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="`json`: one object per line, with request and job ids; `text`."
    )

    access_log: Literal["all", "errors"] = Field(
        "all",
        description="One log line per request (`all`), or for 4xx and 5xx answers only "
        "(`errors`: about 15% more inference throughput at 32 clients).",
    )

    # Who may call.
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token that writes must present (`make up` and init.sh generate "
        "one). Unset: writes are open, which production refuses.",
    )
    api_token_for_reads: bool = Field(
        False, description="Require the token on reads too (the SSE feed excepted)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        ["http://127.0.0.1:5001", "http://localhost:5001"],
        description="Origins allowed to call the API from a browser, comma-separated.",
    )
    dashboard_port: int = Field(5001, description="Port of the dashboard (local platform).")
    dashboard_client_connections: int = Field(
        2048,
        ge=1,
        description="Connections one client address may hold open through the dashboard's"
        " /api/ proxy, alert streams included (nginx limit_conn; more get 429).",
    )
    data_dir: Path = Field(
        Path(".data"), description="Local platform state: MLflow store, Valkey data, logs."
    )

    # The dataset.
    dataset_uri: str = Field(
        "",
        description="Default dataset (CSV or Parquet): a path or s3:// URI"
        " (default: DATA_DIR/iris.csv).",
    )
    target_column: str = Field("variety", description="Default label column of the dataset.")
    dataset_locations: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Where a request's dataset_uri may point, comma-separated folders and"
        " s3://bucket/prefix/ (default: DATA_DIR and the default dataset's bucket).",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO) for s3:// URIs.")
    s3_access_key_id: str | None = Field(None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")

    # MLflow names and the promotion rule.
    experiment_name: str = Field("mlops_experiment", description="MLflow experiment.")
    model_name: str = Field("mlops_model", description="Registered model name.")
    champion_alias: str = Field("champion", description="Alias of the model that serves.")
    accuracy_threshold: float = Field(
        0.9, ge=0, le=1, description="Minimum held-out accuracy to become the champion."
    )
    promotion_tolerance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="How much below the champion's accuracy (on the same test rows) a new "
        "version may score and still be promoted.",
    )
    test_size: float = Field(0.2, gt=0, lt=1, description="Held-out fraction of the dataset.")

    # Input drift (mlops.ml.drift).
    drift_threshold: float = Field(
        0.2, gt=0, description="PSI at which a feature drifts (the KS test must agree too)."
    )
    drift_alpha: float = Field(
        0.01, gt=0, lt=1, description="KS p-value under which a feature's change is significant."
    )
    drift_min_rows: int = Field(
        200, ge=20, description="Served rows a drift check needs before it gives a verdict."
    )
    drift_sample_rows: int = Field(
        5000, ge=100, description="Recent served rows kept per model version for drift checks."
    )
    random_seed: int = Field(42, description="Seed of the train/test split.")

    # Limits that keep one request from exhausting the cluster.
    max_n_estimators: int = Field(500, ge=1, description="Upper bound on n_estimators.")
    max_depth_limit: int = Field(
        64, ge=1, description="Upper bound on max_depth, and its value when a request omits it."
    )
    warm_trainer: bool = Field(
        True,
        description="Run each training in the long-lived trainer actor, where scikit-learn and"
        " MLflow are already imported (about 5 s faster a job); false: a fresh process per job.",
    )
    trainer_memory_mb: int = Field(
        1024,
        ge=128,
        description="Memory the warm trainer reserves in Ray (MiB): Ray places it only on a "
        "node with that much free, and places nothing there that would take it.",
    )
    training_max_cpus: int = Field(
        8,
        ge=1,
        description="CPUs one training may use to build its trees (it takes what the"
        " cluster has free, up to this).",
    )
    parallel_fit_min_work: int = Field(
        2_000_000,
        ge=0,
        description="Rows × trees below which a fit runs on one CPU: spreading"
        " a sub-second fit over Ray workers costs more than it saves.",
    )
    dataset_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Largest dataset a job reads, checked before reading (file size, S3 "
        "HEAD) and for Parquet also unpacked (its metadata).",
    )
    dataset_max_rows: int = Field(5_000_000, ge=10, description="Most rows a dataset may have.")
    dataset_max_columns: int = Field(
        1_000, ge=2, description="Most columns (features and target) a dataset may have."
    )
    tune_max_trials: int = Field(64, ge=1, description="Upper bound on a search's trials.")
    tune_time_budget_seconds: float = Field(
        1200,
        gt=0,
        description="A search's time budget: trials still running then are stopped, and the"
        " best finished one is registered (none finished: the search fails, saying so).",
    )
    job_max_seconds: float = Field(
        3600,
        gt=0,
        description="Longest a training or search job may exist before the API stops its Ray"
        " job and marks it failed (it then frees its admission slot).",
    )
    max_active_trainings: int = Field(
        4, ge=0, description="Training jobs pending or running at once (0: no limit); more get 429."
    )
    max_schedules: int = Field(
        100, ge=1, description="Schedules and watches that may exist; more get 429."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted; larger gets 413."
    )
    redis_wait_seconds: float = Field(
        300,
        ge=0,
        description="How long a finished training job waits out a Redis outage to record "
        "its outcome and alert.",
    )
    alert_history: int = Field(10_000, ge=100, description="Alerts kept in the Redis stream.")
    job_history: int = Field(1_000, ge=10, description="Training jobs kept in the job index.")
    job_poll_seconds: float = Field(
        2.0, gt=0, description="How often the API reconciles running jobs with Ray."
    )
    schedule_minute_seconds: float = Field(
        60.0,
        gt=0,
        description="Length of a schedule 'minute' in seconds. For tests only: keep 60.",
    )
    sse_ping_seconds: float = Field(15.0, gt=0, description="Keep-alive interval of /webhook.")
    sse_max_clients: int = Field(
        4000,
        ge=1,
        description="SSE clients one API process serves at once; more get 503 with "
        "Retry-After (each costs a connection and a small queue).",
    )
    sse_max_replay: int = Field(
        1000,
        ge=1,
        description="Most alerts replayed to a client that connects or resumes; older ones "
        "are in GET /alerts.",
    )

    @field_validator("cors_origins", "dataset_locations", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _fill_defaults_and_refuse_example_secrets(self) -> Settings:
        # Absolute, because Ray jobs and replicas run in other working directories.
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.dataset_uri:
            self.dataset_uri = str(self.data_dir / "iris.csv")
        if not self.dataset_locations:
            self.dataset_locations = [str(self.data_dir)]
            if self.dataset_uri.startswith("s3://"):
                bucket = self.dataset_uri.removeprefix("s3://").split("/", 1)[0]
                self.dataset_locations.append(f"s3://{bucket}/")
        if self.tune_time_budget_seconds >= self.job_max_seconds:
            raise ValueError(
                "MLOPS_TUNE_TIME_BUDGET_SECONDS must be below MLOPS_JOB_MAX_SECONDS: a search "
                "needs time after its trials to fit and register the best one"
            )
        if self.environment == "production":
            if "*" in self.cors_origins:
                raise ValueError("MLOPS_CORS_ORIGINS must list origins, not '*'")
            for name in ("redis_password", "s3_secret_access_key"):
                value = getattr(self, name)
                if value is not None and value.get_secret_value() in _EXAMPLE_SECRETS:
                    raise ValueError(f"MLOPS_{name.upper()} is an example value; set a real one")
            if self.model_signing_key is None or len(self.model_signing_key) < 32:
                raise ValueError(
                    "MLOPS_MODEL_SIGNING_KEY must be set to at least 32 characters in "
                    "production: without it no registered version can be trusted"
                )
        return self

    def mlflow_credentials(self) -> tuple[str, str] | None:
        if self.mlflow_username is None or self.mlflow_password is None:
            return None
        return self.mlflow_username, self.mlflow_password.get_secret_value()

    def ray_token(self) -> str | None:
        """MLOPS_RAY_AUTH_TOKEN, else the one `make up` keeps in DATA_DIR/ray-token (so
        `python fastapi/serve.py` works beside a local platform with no variable set)."""
        if self.ray_auth_token is not None:
            return self.ray_auth_token.get_secret_value()
        kept = self.data_dir / "ray-token"
        return kept.read_text().strip() if kept.is_file() else None

    def signing_key(self) -> bytes | None:
        """MLOPS_MODEL_SIGNING_KEY, else the one `make up` keeps in DATA_DIR/signing-key."""
        if self.model_signing_key is not None:
            return self.model_signing_key.get_secret_value().encode()
        kept = self.data_dir / "signing-key"
        return kept.read_text().strip().encode() if kept.is_file() else None

    @classmethod
    def per_process_variables(cls) -> set[str]:
        """The MLOPS_* names of the settings each process has of its own and never passes
        on: every secret, and the identity it signs in with."""
        return {f"MLOPS_{name.upper()}" for name in cls._per_process_fields()}

    @classmethod
    def _per_process_fields(cls) -> set[str]:
        return {
            name
            for name, field in cls.model_fields.items()
            if SecretStr in (field.annotation, *get_args(field.annotation))
            or (
                isinstance(field.json_schema_extra, dict)
                and field.json_schema_extra.get("per_process")
            )
        }

    def secrets_env(self, *names: str) -> dict[str, str]:
        """Only the named per-process settings (secrets, the Redis user), as MLOPS_*
        variables: each process is given the credentials it uses and no others."""
        env = {}
        for name in names:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None:
                env[f"MLOPS_{name.upper()}"] = str(value)
        return env

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        """Settings from the MLOPS_* variables given (what `as_env` made without
        secrets), and the per-process ones (secrets, the Redis user) only from this
        process's environment: how a long-lived Ray actor takes each job's settings,
        whatever job started it."""
        own = cls.per_process_variables()
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = f"MLOPS_{name.upper()}"
            source = os.environ if key in own else env
            if key in source:
                values[name] = source[key]
        # Only these values: a variable an earlier job left in this process must not
        # stand in for a setting this job left at its default.
        return _GivenSettings(**values)

    def as_env(self, *, include_secrets: bool) -> dict[str, str]:
        """These settings as MLOPS_* variables, for processes the platform starts.

        Ray jobs get them without secrets (nor the Redis user): those reach a job from
        the Ray node's own environment (a Kubernetes Secret in the cluster, the
        supervisor's environment locally), never through the Jobs API, whose payload the
        Ray dashboard shows.
        """
        env: dict[str, str] = {}
        own = type(self)._per_process_fields()
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or (name in own and not include_secrets):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, list):
                value = ",".join(value)
            env[f"MLOPS_{name.upper()}"] = str(value)
        return env


class _GivenSettings(Settings):
    """Settings from the values given and the defaults, never the environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _default_text(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None or default == "":
        return "(unset)"
    if isinstance(default, list):
        return ",".join(default)
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def reference_markdown() -> str:
    """docs/configuration.md: every setting, generated from the fields above (a test
    checks that the file is up to date: `make docs` rewrites it)."""
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable read by `fastapi/mlops/settings.py`, the",
        "same in the API, the training jobs, the Serve replicas and `make up`. In the",
        "cluster they come from `manifests/api/configmap.yaml` and the `mlops-secrets`",
        "Secret that `config/init.sh` generates.",
        "",
        "Generated by `make docs` from the settings object; do not edit by hand.",
        "",
        "| variable | default | what it does |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `MLOPS_{name.upper()}` | `{_default_text(field)}` | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
