"""Alerts: the live Server-Sent Events feed and the recent history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, status
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mlops.api.deps import (
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    AlertFeedDep,
    CatalogDep,
    ModelQuery,
    Reader,
    SettingsDep,
)
from mlops.schemas import AlertList
from mlops.services.alerts import AlertFeed, Subscription, is_stream_id

log = logging.getLogger(__name__)
router = APIRouter(tags=["alerts"])


class AlertSseResponse(Response):
    """The /webhook response: the feed's frames as they come, until the client leaves
    or Redis fails (the client then reconnects with Last-Event-ID and loses nothing).

    Each stream is one task that sends the frames the feed encoded once for all clients,
    and one waiter for the client's disconnect. sse-starlette's response ran a task group
    of three tasks per client and encoded every event for each client: at a thousand
    streams that cost 34 µs of the API's CPU per delivered alert (26-30 µs now), and twice
    the objects per connection for the garbage collector to walk (docs/benchmarks.md).
    On shutdown, open streams get uvicorn's graceful timeout, go on delivering alerts
    meanwhile, and are then cancelled; clients reconnect to another replica.
    """

    media_type = "text/event-stream"

    def __init__(self, feed: AlertFeed, resume_from: str | None) -> None:
        self.status_code = status.HTTP_200_OK
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._feed = feed
        self._resume_from = resume_from

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self._feed.subscribe() as subscription:
            watcher = asyncio.ensure_future(_close_on_disconnect(receive, subscription))
            try:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                frames = self._feed.frames(self._resume_from, subscription)
                async with contextlib.aclosing(frames):
                    async for frame in frames:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
            except RedisError as exc:
                log.warning("closing an SSE stream, Redis failed: %s", exc)
            finally:
                watcher.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _close_on_disconnect(receive: Receive, subscription: Subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    subscription.close()


@router.get(
    "/webhook",
    status_code=status.HTTP_200_OK,  # for the OpenAPI document: the response sets its own
    response_class=AlertSseResponse,
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
) -> AlertSseResponse:
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

    return AlertSseResponse(feed, resume_from)


@router.get("/alerts", dependencies=[Reader], responses={**UNAUTHORIZED, **UNKNOWN_MODEL})
async def recent_alerts(
    feed: AlertFeedDep,
    catalog: CatalogDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    model: ModelQuery = None,
) -> AlertList:
    """The most recent alerts, newest first; with `model`, those of that model."""
    if model is not None:
        model = (await catalog.get(model)).name
    return AlertList(alerts=await feed.recent(limit, model))
