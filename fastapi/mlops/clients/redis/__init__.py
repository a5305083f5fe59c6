"""What the platform keeps in Redis, one store per module: the alert stream
(`alerts`), job records (`jobs`), the champion's moves (`champion_moves`), served rows
for drift checks (`drift_samples`), recorded predictions and their labels
(`predictions`), the deploy lock (`deploy_lock`); every key in
`keys`, the stores' Lua in `scripts`, the client in `connection`."""

from mlops.clients.redis.alerts import AlertStream
from mlops.clients.redis.champion_moves import ChampionMoves
from mlops.clients.redis.connection import connect
from mlops.clients.redis.deploy_lock import DeployLock
from mlops.clients.redis.drift_samples import DriftSamples
from mlops.clients.redis.jobs import JobStore
from mlops.clients.redis.predictions import PredictionWriter

__all__ = [
    "AlertStream",
    "ChampionMoves",
    "DeployLock",
    "DriftSamples",
    "JobStore",
    "PredictionWriter",
    "connect",
]
