"""What every process of the platform reads: where MLflow and Redis are, who it signs in
as, the registered model, and how its settings travel to the processes it starts.

Each runtime has its own settings class on top of this one (`api`, `training`,
`serving`; `platform` for `make up`), all read from the same MLOPS_* variables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, get_args

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The API token `make up` keeps in the data folder; `mlops` reads it there.
API_TOKEN_FILE = "api-token"

# Credentials that ship as examples (MinIO's well-known default); never valid in production.
EXAMPLE_SECRETS = {"minioadmin", "changeme", "secret", "password"}


def refuse_example(name: str, value: SecretStr | None) -> None:
    if value is not None and value.get_secret_value() in EXAMPLE_SECRETS:
        raise ValueError(f"MLOPS_{name.upper()} is an example value; set a real one")


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses example credentials, and an API without a token.",
    )
    data_dir: Path = Field(
        Path(".data"), description="Local platform state: MLflow store, Valkey data, logs."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="`json`: one object per line, with request and job ids; `text`."
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
    model_signing_key: SecretStr | None = Field(
        None,
        description="Key of the seal (HMAC-SHA256) the trainer puts on each version it "
        "registers; replicas, the trainer and the API load, score and promote only sealed "
        "versions. Required in production (init.sh generates one); `make up` keeps one in "
        "DATA_DIR/signing-key (mode 600).",
    )
    model_name: str = Field(
        "mlops_model",
        description="The default model's MLflow registered model (models created later are "
        "registered under their own names).",
    )
    champion_alias: str = Field("champion", description="Alias of the model that serves.")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Absolute, because Ray jobs and replicas run in other working directories.
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _refuse_example_connections(self) -> Self:
        if self.environment == "production":
            refuse_example("redis_password", self.redis_password)
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

    def as_env(
        self, *, include_secrets: bool, runtime: type[RuntimeSettings] | None = None
    ) -> dict[str, str]:
        """These settings as MLOPS_* variables, for a process the platform starts: only
        the fields of `runtime` (default: all of these), the settings that process reads.

        Ray jobs and replicas get them without secrets (nor the Redis user): those reach
        them from the Ray node's own environment (a Kubernetes Secret in the cluster, the
        supervisor's environment locally), never through the Jobs or Serve API, whose
        payloads the Ray dashboard shows.
        """
        runtime = runtime or type(self)
        if not isinstance(self, runtime):
            raise TypeError(f"{type(self).__name__} does not hold {runtime.__name__}")
        env: dict[str, str] = {}
        own = runtime._per_process_fields()
        for name in runtime.model_fields:
            value = getattr(self, name)
            if value is None or (name in own and not include_secrets):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, list):
                value = ",".join(value)
            env[f"MLOPS_{name.upper()}"] = str(value)
        return env

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (a Ray call, the state Tune saves of a search) without a secret:
        unpickled, the settings take theirs from that process's environment, as a
        long-lived actor takes a job's (`from_env`). Tune kept the Redis password and
        the model signing key in each search's saved state otherwise."""
        importable = next(
            c
            for c in type(self).__mro__
            if getattr(sys.modules[c.__module__], c.__name__, None) is c
        )
        return (_unpickled, (importable, self.as_env(include_secrets=False)))

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Self:
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
        return _given_only(cls)(**values)


_Runtime = TypeVar("_Runtime", bound=RuntimeSettings)


def _unpickled(cls: type[_Runtime], env: dict[str, str]) -> _Runtime:
    return cls.from_env(env)


def _given_only(cls: type[_Runtime]) -> type[_Runtime]:
    """`cls` reading only the values it is given and its defaults, never the environment."""

    def sources(
        given: type[BaseSettings],
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    given = {"settings_customise_sources": classmethod(sources), "__module__": cls.__module__}
    return type(f"Given{cls.__name__}", (cls,), given)
