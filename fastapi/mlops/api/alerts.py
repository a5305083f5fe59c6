"""Alerts: the live Server-Sent Events feed and the recent history."""

from __future__ import annotations

import logging
from typing import Annotated

from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from fastapi import APIRouter, Header, HTTPException, Query, status
from mlops.api.deps import UNAUTHORIZED, Reader, ServicesDep
from mlops.schemas import AlertList
from mlops.services.alerts import alert_events, is_stream_id

log = logging.getLogger(__name__)
router = APIRouter(tags=["alerts"])
_RECONNECT_MS = 2000


@router.get(
    "/webhook",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "First a `ready` event (id: the stream position at connection), "
            "then one `alert` event per alert (id: its stream id).",
        }
    },
)
async def webhook(
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header()] = None,
    since: Annotated[str | None, Query(description="Resume after this alert id.")] = None,
) -> EventSourceResponse:
    """Every alert to every client, live. Reconnecting with Last-Event-ID (or `since`)
    first replays what was missed."""
    resume_from = last_event_id or since
    if resume_from and not is_stream_id(resume_from):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"Last-Event-ID {resume_from!r} is not an alert id (like 1700000000000-0)",
        )

    async def events():
        try:
            async for event in alert_events(services.broadcaster, services.alerts, resume_from):
                # `retry` tells the browser how soon to reconnect if the stream drops.
                retry = _RECONNECT_MS if event.kind == "ready" else None
                yield ServerSentEvent(data=event.json, id=event.id, event=event.kind, retry=retry)
        except RedisError as exc:
            # The stream ends; the client reconnects with Last-Event-ID and loses nothing.
            log.warning("closing an SSE stream, Redis failed: %s", exc)

    return EventSourceResponse(
        events(),
        ping=services.settings.sse_ping_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/alerts", dependencies=[Reader], responses=UNAUTHORIZED)
async def recent_alerts(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> AlertList:
    """The most recent alerts, newest first."""
    return AlertList(alerts=await services.alerts.recent(limit))
