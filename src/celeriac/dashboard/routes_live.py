"""The page, its live stream, and ``/metrics``.

    GET /               the page (static/index.html; app.js and app.css under /static/)
    GET /api/stream     Server-Sent Events: ``task``, ``worker`` and ``queues`` changes as
                        they happen, each with its feed number as the event id, so a browser
                        reconnecting with ``Last-Event-ID`` gets what it missed; ``reload``
                        when it missed more than the feed keeps; a comment every 15 s keeps
                        proxies from closing an idle stream
    GET /metrics        Prometheus text (see ``metrics``)

Reading the stream and rendering metrics never block the event loop.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from celeriac.dashboard import metrics as prometheus
from celeriac.dashboard._context import STATIC, Dashboard, dashboard_of
from celeriac.dashboard.live import LiveFeed, LiveItem

__all__ = ["routes", "sse_event"]

_KEEPALIVE = 15.0


def sse_event(item: LiveItem) -> str:
    """One feed item as a Server-Sent Event."""
    return f"id: {item.seq}\nevent: {item.kind}\ndata: {json.dumps(item.data)}\n\n"


async def index(request: Request) -> HTMLResponse:
    """The page, its links made to start with the ``--url-prefix`` it is served under."""
    root = html.escape(str(request.scope.get("root_path", "")).rstrip("/"), quote=True)
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace('"/static/', f'"{root}/static/').replace(
        "<head>", f'<head>\n<meta name="celeriac-root" content="{root}">', 1
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


def _start(request: Request, feed: LiveFeed) -> tuple[int, bool]:
    """Where a stream starts: after Last-Event-ID when reconnecting, else from now; and
    whether the browser must reload (its last id is from before the dashboard restarted)."""
    for value in (request.headers.get("last-event-id"), request.query_params.get("since")):
        if value and value.isdigit():
            return min(int(value), feed.last_seq), int(value) > feed.last_seq
    return feed.last_seq, False


async def _events(feed: LiveFeed, seq: int, reload: bool) -> AsyncIterator[str]:
    yield f"retry: 2000\nevent: hello\ndata: {json.dumps({'seq': seq})}\n\n"
    if reload:
        yield "event: reload\ndata: {}\n\n"
    while not feed.closed:
        items, gap = await feed.wait(seq, _KEEPALIVE)
        if gap:
            yield "event: reload\ndata: {}\n\n"
        if not items:
            yield ": keep-alive\n\n"
            continue
        yield "".join(sse_event(item) for item in items)
        seq = items[-1].seq


async def stream(request: Request) -> StreamingResponse:
    feed = dashboard_of(request).feed
    return StreamingResponse(
        _events(feed, *_start(request, feed)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _metrics_text(board: Dashboard) -> str:
    return prometheus.render(
        board.store.totals(),
        board.store.runtimes(),
        board.queues.snapshot(),
        board.store.workers(),
    )


async def metrics(request: Request) -> PlainTextResponse:
    text = await run_in_threadpool(_metrics_text, dashboard_of(request))
    return PlainTextResponse(text, media_type=prometheus.CONTENT_TYPE)


def routes() -> list[Route]:
    return [
        Route("/", index),
        Route("/api/stream", stream),
        Route("/metrics", metrics),
    ]
