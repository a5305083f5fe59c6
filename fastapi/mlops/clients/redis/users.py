"""The platform's Redis users: each component signs in as its own, with only the keys
and commands it uses, so a Ray pod's credential cannot rewrite schedules (which the API
carries out) nor run an administrative command.

One source for the embedded server of `make up` (`local/components.py` writes these rules
into its config file) and the cluster's (`helm-values/redis.yaml`, checked equal to these
by tests/infra). The default user, with the server's own password, stays for people and
the chart's probes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from mlops.clients.redis.keys import ALERT_STREAM, PREDICTION_INDEX, prediction_stream_key

# Data commands only: no administration (CONFIG, ACL, SHUTDOWN, DEBUG), no KEYS, no FLUSH.
_DATA_COMMANDS = (
    "-@all +@read +@write +@keyspace +@stream +@hash +@set +@sortedset +@string "
    "+@scripting +@transaction +@connection -@dangerous"
)


@dataclass(frozen=True)
class RedisUser:
    name: str
    keys: str
    commands: str = _DATA_COMMANDS
    channels: str = "resetchannels"

    def rule(self, password: str) -> str:
        """This user's line in a Redis ACL file, its password stored hashed."""
        digest = hashlib.sha256(password.encode()).hexdigest()
        return f"user {self.name} on #{digest} {self.keys} {self.channels} {self.commands}"


# The API: every key of the platform (jobs, alerts, schedules, history, drift samples,
# the deploy lock).
API = RedisUser("api", keys="~mlops:*")
# Ray's processes (training jobs, the trainer, Serve replicas): their job records and the
# job counters, the champion history and alerts they append, the drift samples and the
# predictions replicas record (with their index), the trainings the API queues for the
# trainer. Not the schedules, not the deploy lock, not the labels people send back.
RAY = RedisUser(
    "ray",
    keys=(
        f"~mlops:job:* ~mlops:jobs ~mlops:jobs:* ~mlops:champion-history:* "
        f"~{ALERT_STREAM} ~mlops:drift-sample:* ~mlops:trainer-queue:* "
        f"~{prediction_stream_key('*')} ~{PREDICTION_INDEX}"
    ),
)
USERS = (API, RAY)


def derived_password(server_password: str, user: RedisUser) -> str:
    """The embedded server's password for `user`, derived from the server's own, so
    `make up` keeps one secret file; no user's password reveals the server's or
    another user's."""
    return hmac.new(server_password.encode(), user.name.encode(), hashlib.sha256).hexdigest()
