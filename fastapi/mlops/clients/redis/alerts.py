"""The alert stream: what the platform tells people, read by the dashboard's SSE feed."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from mlops.clients.redis.connection import SOCKET_TIMEOUT_S
from mlops.clients.redis.keys import ALERT_STREAM, alert_claim_key, job_key
from mlops.clients.redis.scripts import APPEND_ONCE, PUBLISH_ONCE_IN
from mlops.contracts.alerts import Alert, AlertKind, AlertLevel

log = logging.getLogger(__name__)
# Entries read at a time when looking for one model's alerts.
_PAGE = 500


def _now() -> datetime:
    return datetime.now(UTC)


def _decode_alert(entry_id: str, fields: Mapping[str, str]) -> Alert:
    return Alert.model_validate(
        {
            "id": entry_id,
            "level": fields["level"],
            "text": fields["text"],
            "kind": fields["kind"],
            "created_at": fields["created_at"],
            "data": json.loads(fields["data"]) if fields.get("data") else None,
        }
    )


def _decode_alerts(entries: Sequence[tuple[str, Mapping[str, str]]]) -> list[Alert]:
    """The well-formed alerts of `entries`. Anything else written to the stream (junk
    fields, bad JSON, wrong types) is skipped with one log line: one bad entry must not
    stop the feed or the history for everyone."""
    alerts = []
    for entry_id, fields in entries:
        try:
            alerts.append(_decode_alert(entry_id, fields))
        except (KeyError, ValueError, TypeError, ValidationError) as exc:
            log.warning("skipped malformed alert %s: %s", entry_id, str(exc).splitlines()[0])
    return alerts


class AlertStream:
    """The platform's alerts: a capped stream, so every reader sees every alert and a
    reader that was away resumes from the id it last saw."""

    def __init__(self, redis: Redis, *, max_len: int) -> None:
        self._redis = redis
        self._max_len = max_len
        self._append_once = redis.register_script(APPEND_ONCE)
        self._publish_once_in = redis.register_script(PUBLISH_ONCE_IN)

    async def ping(self) -> bool:
        """The server answers (for readiness)."""
        return bool(await self._redis.ping())

    async def publish(
        self, level: AlertLevel, text: str, *, kind: AlertKind, data: dict[str, Any] | None = None
    ) -> Alert:
        fields = {"level": level, "text": text, "kind": kind, "created_at": _now().isoformat()}
        if data:
            fields["data"] = json.dumps(data)
        entry_id = await self._redis.xadd(
            ALERT_STREAM, fields, maxlen=self._max_len, approximate=True
        )
        return _decode_alert(entry_id, fields)

    async def publish_for_job(
        self, job_id: str, level: AlertLevel, text: str, *, data: dict[str, Any]
    ) -> Alert | None:
        """A job's final alert: published once whoever calls (the job, or any API
        replica reconciling it) and however often (retries through an outage). The
        claim and the publication are one atomic step, so neither is lost alone."""
        fields = {
            "level": level,
            "text": text,
            "kind": AlertKind.TRAINING,
            "created_at": _now().isoformat(),
            "data": json.dumps(data),
        }
        entry_id = await self._append_once(
            keys=[job_key(job_id), ALERT_STREAM],
            args=["alerted", self._max_len, *(part for pair in fields.items() for part in pair)],
        )
        return _decode_alert(entry_id, fields) if entry_id else None

    async def publish_once_in(
        self,
        topic: str,
        seconds: int,
        level: AlertLevel,
        text: str,
        *,
        kind: AlertKind,
        data: dict[str, Any],
    ) -> Alert | None:
        """An alert on `topic` at most once in `seconds`, however many processes see
        what it says (claim and publication in one atomic step)."""
        fields = {
            "level": level,
            "text": text,
            "kind": kind,
            "created_at": _now().isoformat(),
            "data": json.dumps(data),
        }
        entry_id = await self._publish_once_in(
            keys=[alert_claim_key(topic), ALERT_STREAM],
            args=[seconds, self._max_len, *(part for pair in fields.items() for part in pair)],
        )
        return _decode_alert(entry_id, fields) if entry_id else None

    async def recent(self, limit: int, *, model: str | None = None) -> list[Alert]:
        """Newest first; with `model`, the newest of those that name it (`data.model`),
        read through the capped stream a page at a time."""
        if model is None:
            return _decode_alerts(await self._redis.xrevrange(ALERT_STREAM, count=limit))
        found: list[Alert] = []
        newest = "+"
        while len(found) < limit:
            entries = await self._redis.xrevrange(ALERT_STREAM, max=newest, count=_PAGE)
            found += [a for a in _decode_alerts(entries) if (a.data or {}).get("model") == model]
            if len(entries) < _PAGE:
                break
            newest = f"({entries[-1][0]}"
        return found[:limit]

    async def after(self, last_id: str, limit: int = 1000) -> list[Alert]:
        """Alerts newer than last_id, oldest first."""
        return _decode_alerts(
            await self._redis.xrange(ALERT_STREAM, min=f"({last_id}", count=limit)
        )

    async def nth_newest_id(self, n: int) -> str | None:
        """The id just before the n newest entries (None when there are no more than n)."""
        entries = await self._redis.xrevrange(ALERT_STREAM, count=n + 1)
        return entries[n][0] if len(entries) > n else None

    async def last_id(self) -> str:
        newest = await self._redis.xrevrange(ALERT_STREAM, count=1)
        return newest[0][0] if newest else "0-0"

    async def wait_after(self, last_id: str, *, block_ms: int) -> tuple[str, list[Alert]]:
        """Block up to block_ms for entries newer than last_id: (the newest entry id
        read, which moves past malformed entries too; the alerts among them)."""
        if block_ms >= SOCKET_TIMEOUT_S * 1000:
            raise ValueError(f"block_ms must stay under the socket timeout ({SOCKET_TIMEOUT_S} s)")
        reply = await self._redis.xread({ALERT_STREAM: last_id}, block=block_ms, count=500)
        entries = [entry for _, stream_entries in reply for entry in stream_entries]
        return (entries[-1][0] if entries else last_id), _decode_alerts(entries)

    async def read_group(
        self, group: str, consumer: str, *, block_ms: int, reclaim_after_ms: int
    ) -> list[Alert]:
        """Alerts for one consumer of `group`: first those another consumer took but did
        not acknowledge within reclaim_after_ms (it died), then new ones, blocking up to
        block_ms. Each alert goes to one consumer of the group, and the group's place in
        the stream outlives its consumers. Acknowledge each with `ack` once handled."""
        if block_ms >= SOCKET_TIMEOUT_S * 1000:
            raise ValueError(f"block_ms must stay under the socket timeout ({SOCKET_TIMEOUT_S} s)")
        try:
            claimed = await self._redis.xautoclaim(
                ALERT_STREAM, group, consumer, min_idle_time=reclaim_after_ms, count=100
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._create_group(group)  # the first read, or Redis lost its data
            return []
        entries = claimed[1]
        if not entries:
            reply = await self._redis.xreadgroup(
                group, consumer, {ALERT_STREAM: ">"}, count=100, block=block_ms
            )
            entries = [entry for _, stream_entries in reply for entry in stream_entries]
        alerts = _decode_alerts(entries)
        decoded = {alert.id for alert in alerts}
        await self.ack(group, *(entry_id for entry_id, _ in entries if entry_id not in decoded))
        return alerts

    async def ack(self, group: str, *alert_ids: str) -> None:
        if alert_ids:
            await self._redis.xack(ALERT_STREAM, group, *alert_ids)

    async def _create_group(self, group: str) -> None:
        """The group, created at the stream's end (alerts before it are not its)."""
        try:
            await self._redis.xgroup_create(ALERT_STREAM, group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
