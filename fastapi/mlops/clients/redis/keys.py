"""Where the platform keeps things in Redis: every key, in one place (the ACL rules of
`clients/redis/users.py` name the same prefixes)."""

from __future__ import annotations

ALERT_STREAM = "mlops:alerts"
HISTORY_LENGTH = 10_000  # champion moves kept per model
JOB_INDEX = "mlops:jobs"  # sorted by creation time
JOB_ACTIVE = "mlops:jobs:active"  # the ids of pending and running jobs
JOB_TOTALS = "mlops:jobs:finished"  # status -> jobs that ended so, since the start
JOB_DURATIONS = "mlops:jobs:durations"  # histogram of their run times, per status
DEPLOY_LOCK = "mlops:serve-deploy"
MODEL_DEFINITIONS = "mlops:models"  # name -> definition (JSON), the models in use
ARCHIVED_MODELS = "mlops:models:archived"  # name -> definition, archived ones
MODEL_CHANGES_LENGTH = 1_000  # definition changes kept per model
# Upper bounds (seconds) of the run-time histogram buckets.
DURATION_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


def job_key(job_id: str) -> str:
    return f"mlops:job:{job_id}"


def model_jobs_key(model_name: str) -> str:
    """A model's jobs, sorted by creation time (each is in JOB_INDEX too)."""
    return f"mlops:jobs:model:{model_name}"


def champion_moves_key(model_name: str) -> str:
    return f"mlops:champion-history:{model_name}"


def drift_sample_key(model_name: str, version: str) -> str:
    return f"mlops:drift-sample:{model_name}:{version}"


def model_changes_key(model_name: str) -> str:
    return f"mlops:model-changes:{model_name}"


def prediction_stream_key(model_name: str) -> str:
    """A model's recorded predictions, oldest first (capped by count and age)."""
    return f"mlops:predictions:{model_name}"


# Every recorded prediction, by id: "its stream, its entry#its place in the entry [the
# entry of its label]"; trimmed with the streams, so it holds no more than they do. And
# each stream's count of predictions, under "#" and the stream's key.
PREDICTION_INDEX = "mlops:prediction-index"


def label_stream_key(model_name: str) -> str:
    """A model's predictions joined with their true outcomes, by time of arrival."""
    return f"mlops:labels:{model_name}"


ROLLOUTS = "mlops:rollouts"  # model -> its rollout in progress (JSON)
ENDED_ROLLOUTS_KEPT = 20  # per model


def ended_rollouts_key(model_name: str) -> str:
    """A model's ended rollouts, newest first."""
    return f"mlops:rollouts:ended:{model_name}"


def alert_claim_key(topic: str) -> str:
    """Held while an alert on `topic` may not be published again."""
    return f"mlops:alert-claim:{topic}"


RETRAINING_IN_FLIGHT = "mlops:retraining:in-flight"  # model -> its retraining (JSON)
RETRAINING_ROLLOUTS = "mlops:retraining:rollouts"  # rollout id -> the retraining behind it
RETRAINING_STEPS_KEPT = 1_000  # per model
RETRAINING_GROUP = "retraining"  # the retraining loop's consumer group on the alert stream


def retraining_cooldown_key(model_name: str) -> str:
    """Held while no retraining of the model may start."""
    return f"mlops:retraining:cooldown:{model_name}"


def retraining_steps_key(model_name: str) -> str:
    return f"mlops:retraining:steps:{model_name}"


TRAINER_QUEUE_MAX_AGE_S = 3600


def trainer_queue_key(trainer: str) -> str:
    """Trainings waiting for the warm trainer named `trainer`, newest first."""
    return f"mlops:trainer-queue:{trainer}"
