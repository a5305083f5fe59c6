"""What a training or search job reads (`mlops.ml.job` and the warm trainer, which runs
both kinds): the common settings, the dataset, the promotion gate, and the limits of one
job's work."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from mlops.settings.base import RuntimeSettings, refuse_example


class TrainingSettings(RuntimeSettings):
    # The dataset.
    dataset_uri: str = Field(
        "",
        description="Default dataset (CSV or Parquet): a path or s3:// URI"
        " (default: DATA_DIR/iris.csv).",
    )
    target_column: str = Field("variety", description="Default label column of the dataset.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO) for s3:// URIs.")
    s3_access_key_id: str | None = Field(None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
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

    # The held-out rows every model is judged on.
    test_size: float = Field(0.2, gt=0, lt=1, description="Held-out fraction of the dataset.")
    random_seed: int = Field(42, description="Seed of the train/test split.")

    # One job's work.
    max_depth_limit: int = Field(
        64, ge=1, description="Upper bound on max_depth, and its value when a request omits it."
    )
    warm_trainer: bool = Field(
        True,
        description="Run each training in the long-lived trainer actor, where scikit-learn and"
        " MLflow are already imported (about 5 s faster a job); false: a fresh process per job.",
    )
    training_niceness: int = Field(
        10,
        ge=0,
        le=19,
        description="Scheduling niceness of the trainer and of training jobs' processes: "
        "where they share CPUs with serving, serving comes first.",
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
        " a sub-second fit over tree builders costs more than it saves.",
    )
    tree_builders_idle_seconds: float = Field(
        30.0,
        ge=0,
        description="How long the trainer keeps the Ray actors that build a forest's trees"
        " (one CPU reserved each) after a fit, for the next fit to find them started; 0"
        " releases them as each fit ends.",
    )
    tune_time_budget_seconds: float = Field(
        1200,
        gt=0,
        description="A search's time budget: trials still running then are stopped, and the"
        " best finished one is registered (none finished: the search fails, saying so).",
    )

    # What a job records.
    redis_wait_seconds: float = Field(
        300,
        ge=0,
        description="How long a finished training job waits out a Redis outage to record "
        "its outcome and alert.",
    )
    alert_history: int = Field(10_000, ge=100, description="Alerts kept in the Redis stream.")
    job_history: int = Field(
        1_000,
        ge=10,
        description="Training jobs kept per model (the newest; older ones are forgotten).",
    )

    @property
    def tune_dir(self) -> Path:
        """Where Tune keeps a search's state while it runs (removed when it ends)."""
        return self.data_dir / "tune"

    @model_validator(mode="after")
    def _default_dataset(self) -> Self:
        if not self.dataset_uri:
            self.dataset_uri = str(self.data_dir / "iris.csv")
        if self.environment == "production":
            refuse_example("s3_secret_access_key", self.s3_secret_access_key)
        return self
