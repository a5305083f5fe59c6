"""The Redis client every store of this package is given."""

from __future__ import annotations

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from mlops.settings.base import RuntimeSettings

# How long any reply may take. Blocking reads (the alert feed's XREAD) block for less:
# redis-py's default, 5 s, equals the feed's block, so an idle feed's every read timed
# out, was retried three times and then failed.
SOCKET_TIMEOUT_S = 10.0


def connect(settings: RuntimeSettings, *, max_connections: int = 8) -> Redis:
    """A client whose pool makes bursts (hundreds of SSE clients connecting at once)
    wait briefly for a connection instead of failing, and which retries a command on a
    fresh connection when a pooled one died with the server (a Redis restart).

    `max_connections` sizes the pool: the API's is MLOPS_REDIS_MAX_CONNECTIONS; a job's
    recorder or a replica's sampler uses one or two."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections,
        timeout=10,
        username=settings.redis_username,
        password=password,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=3,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
    )
    return Redis(connection_pool=pool, auto_close_connection_pool=True)
