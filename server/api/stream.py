"""``GET /api/v1/stream``: movements and alert changes, live, as Server-Sent Events.

See ``server.alerts.stream`` for what is sent and how. A key restricted to sites sees the
movements touching its sites and the alerts of its sites only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from server.alerts.stream import (
    TOPICS,
    StreamEnded,
    StreamFeed,
    StreamFull,
    Topic,
    sse_comment,
    sse_event,
)
from server.api.auth import Viewer
from server.api.context import Principal

router = APIRouter(prefix="/api/v1", tags=["stream"])
RETRY_MS = 3000
"""What the stream tells EventSource clients to wait before reconnecting."""


def get_feed(request: Request) -> StreamFeed:
    return cast(StreamFeed, request.app.state.stream_feed)


def parse_topics(text: str) -> frozenset[Topic]:
    """``movements,alerts`` -> the topics; 422 naming an unknown one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(TOPICS))
    if unknown or not names:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"topics must be a comma-separated list of {', '.join(TOPICS)}; "
            f"got {', '.join(repr(name) for name in unknown) or 'none'}",
        )
    return frozenset(cast(Topic, name) for name in names)


async def _events(
    feed: StreamFeed, topics: frozenset[Topic], principal: Principal
) -> AsyncIterator[bytes]:
    heartbeat = feed.settings.heartbeat_s
    try:
        async with feed.subscribe(topics, principal.allows, principal.name) as subscription:
            yield f"retry: {RETRY_MS}\n".encode() + sse_comment(
                f"stockgate stream of {','.join(sorted(topics))}"
            )
            while True:
                chunk = await subscription.next(heartbeat)
                yield chunk if chunk is not None else sse_comment("heartbeat")
    except (StreamEnded, StreamFull) as err:
        # Full: more streams raced in between the check below and here.
        yield sse_event("end", "end", {"reason": str(err)})


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `movement`, `alert`, `end`; heartbeats.",
        },
        429: {"description": "Too many streams are open."},
    },
)
async def stream(
    request: Request,
    principal: Viewer,
    topics: Annotated[
        str,
        Query(
            min_length=1,
            max_length=64,
            description="Comma-separated: `movements`, `alerts`.",
        ),
    ] = "movements,alerts",
) -> StreamingResponse:
    """Movements and alert changes as they are committed (Server-Sent Events)."""
    wanted = parse_topics(topics)
    feed = get_feed(request)
    if feed.full():
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{feed.settings.max_clients} streams are open; try again later",
            headers={"Retry-After": "10"},
        )
    if feed.full(principal.name):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"this key holds {feed.settings.max_clients_per_key} streams already "
            "([stream] max_clients_per_key); close one first",
            headers={"Retry-After": "10"},
        )
    return StreamingResponse(
        _events(feed, wanted, principal),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
