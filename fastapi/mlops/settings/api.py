"""What the API reads: everything a job and a replica read (it passes those on when it
submits a job or deploys Serve, and checks requests against them), and its own: where
Ray is, who may call, how Serve is deployed and fed, and the limits of its loops."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from mlops.contracts.model_definition import MODEL_NAME_PATTERN
from mlops.settings.serving import ServingSettings
from mlops.settings.training import TrainingSettings


class ApiSettings(TrainingSettings, ServingSettings):
    # The default model: what requests without a `model` act on. Defined from these on
    # first start; its stored definition (GET /models/{name}) rules after that.
    default_model: str = Field(
        "iris",
        pattern=MODEL_NAME_PATTERN,
        description="Name of the default model (lowercase letters, digits and -).",
    )
    experiment_name: str = Field(
        "mlops_experiment", description="The default model's MLflow experiment."
    )
    accuracy_threshold: float = Field(
        0.9, ge=0, le=1, description="The default model's gate: minimum held-out accuracy."
    )
    promotion_tolerance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="The default model's gate: how much below the champion's accuracy (on "
        "the same test rows) a new version may score and still be promoted.",
    )
    max_models: int = Field(50, ge=1, description="Models that may exist; more get 429.")

    # Where Ray is, and how Serve runs.
    ray_address: str = Field(
        "http://127.0.0.1:8265", description="Ray dashboard URL: the Jobs and Serve REST APIs."
    )
    ray_auth_token: SecretStr | None = Field(
        None,
        description="Ray's token (Ray's RAY_AUTH_MODE=token): sent on every Jobs and Serve "
        "call. `make up` generates one (DATA_DIR/ray-token, mode 600), init.sh another.",
    )
    serve_url: str = Field("http://127.0.0.1:8000", description="Ray Serve HTTP proxy URL.")
    serve_bind_host: str = Field(
        "127.0.0.1", description="Interface Serve's proxy binds (0.0.0.0 in the cluster)."
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
    serve_batch_rows: int = Field(
        64, ge=1, le=1024, description="Most rows the API sends to Serve in one call."
    )
    serve_calls_in_flight: int = Field(
        16,
        ge=1,
        le=64,
        description="Concurrent Serve calls from one API (each carries rows of any models).",
    )
    auto_serve: bool = Field(
        True, description="Deploy the Serve application when a champion exists and it is down."
    )
    serve_check_seconds: float = Field(
        10,
        gt=0,
        description="How often the API looks whether serving must be deployed (with "
        "MLOPS_AUTO_SERVE). A new champion, or a prediction that finds serving down, "
        "makes it look at once.",
    )
    warm_up_trainer: bool = Field(
        True,
        description="At start, submit a Ray job that starts the warm trainer, so the first "
        "training does not wait for it (with MLOPS_WARM_TRAINER).",
    )
    redis_max_connections: int = Field(
        64, ge=4, description="Redis connections per API process (requests wait for one)."
    )
    access_log: Literal["all", "errors"] = Field(
        "all",
        description="One log line per request (`all`), or for 4xx and 5xx answers only "
        "(`errors`: fewer lines; inference throughput at 32 clients within 2% of `all`).",
    )

    # Predictions recorded, and their labels (POST /feedback).
    record_predictions: bool = Field(
        True,
        description="Record every prediction (for feedback and live metrics): the API "
        "gives each its id, the Serve replica that answered records it.",
    )
    label_history: int = Field(
        200_000, ge=100, description="Labelled predictions kept per model for live metrics."
    )
    live_min_labels: int = Field(
        100,
        ge=1,
        description="Labels a version needs before its live metric can raise an alert.",
    )
    live_check_seconds: float = Field(
        60, gt=0, description="How often live metrics are computed (gauges and alerts)."
    )

    # Rollouts (POST /models/{name}/rollouts).
    rollout_alpha: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="The sequential test's error bound: the chance that an automatic "
        "rollout ever decides between two equally good versions.",
    )
    rollout_check_seconds: float = Field(
        2.0, gt=0, description="How often rollouts are checked (decisions, time limits)."
    )
    rollout_refresh_seconds: float = Field(
        1.0, gt=0, description="How long an API process routes by a rollout it read."
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
    dataset_locations: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Where a request's dataset_uri may point, comma-separated folders and"
        " s3://bucket/prefix/ (default: DATA_DIR and the default dataset's bucket).",
    )

    # Drift checks of what Serve answered.
    drift_threshold: float = Field(
        0.2, gt=0, description="PSI at which a feature drifts (the KS test must agree too)."
    )
    drift_alpha: float = Field(
        0.01, gt=0, lt=1, description="KS p-value under which a feature's change is significant."
    )
    drift_min_rows: int = Field(
        200, ge=20, description="Served rows a drift check needs before it gives a verdict."
    )

    # Limits that keep one request from exhausting the cluster.
    max_n_estimators: int = Field(500, ge=1, description="Upper bound on n_estimators.")
    tune_max_trials: int = Field(64, ge=1, description="Upper bound on a search's trials.")
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

    # The API's loops and the alert feed.
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
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _check_api_limits(self) -> Self:
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
        if self.environment == "production" and "*" in self.cors_origins:
            raise ValueError("MLOPS_CORS_ORIGINS must list origins, not '*'")
        return self

    def ray_token(self) -> str | None:
        """MLOPS_RAY_AUTH_TOKEN, else the one `make up` keeps in DATA_DIR/ray-token (so
        `python fastapi/serve.py` works beside a local platform with no variable set)."""
        if self.ray_auth_token is not None:
            return self.ray_auth_token.get_secret_value()
        kept = self.data_dir / "ray-token"
        return kept.read_text().strip() if kept.is_file() else None
