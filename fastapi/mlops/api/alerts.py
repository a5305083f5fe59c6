"""Alerts: the live Server-Sent Events feed and the recent history."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, status
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from mlops.api.deps import UNAUTHORIZED, AlertFeedDep, Reader, SettingsDep
from mlops.schemas import AlertList
from mlops.services.alerts import is_stream_id

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
            "then each alert as an unnamed event, which `EventSource.onmessage` receives "
            "(id: its stream id; data: the alert as JSON).",
        },
        503: {"description": "This process serves MLOPS_SSE_MAX_CLIENTS streams already."},
    },
)
async def webhook(
    feed: AlertFeedDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header()] = None,
    since: Annotated[str | None, Query(description="Resume after this alert id.")] = None,
) -> EventSourceResponse:
    """Every alert to every client, live. Reconnecting with Last-Event-ID (or `since`)
    first replays what was missed."""
    if feed.full:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"this API process serves {settings.sse_max_clients} alert streams already "
            "(MLOPS_SSE_MAX_CLIENTS); retry shortly, or reach another replica",
            headers={"Retry-After": "5"},
        )
    resume_from = last_event_id or since
    if resume_from and not is_stream_id(resume_from):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"Last-Event-ID {resume_from!r} is not an alert id (like 1700000000000-0)",
        )

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            async for event in feed.events(resume_from):
                if event.kind == "ping":
                    yield ServerSentEvent(comment="ping")  # ignored by EventSource
                elif event.kind == "ready":
                    # `retry` tells the browser how soon to reconnect if the stream drops.
                    yield ServerSentEvent(
                        data=event.json, id=event.id, event="ready", retry=_RECONNECT_MS
                    )
                else:
                    yield ServerSentEvent(data=event.json, id=event.id)
        except RedisError as exc:
            # The stream ends; the client reconnects with Last-Event-ID and loses nothing.
            log.warning("closing an SSE stream, Redis failed: %s", exc)

    return EventSourceResponse(
        events(),
        ping=0,  # the feed pings every client from one loop (AlertFeed.ping_forever)
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/alerts", dependencies=[Reader], responses=UNAUTHORIZED)
async def recent_alerts(
    feed: AlertFeedDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> AlertList:
    """The most recent alerts, newest first."""
    return AlertList(alerts=await feed.recent(limit))
