"""The dead letters in the dashboard: what the broker set aside, and sending one back.

    GET  /api/dead-letters?queue=&limit=     the newest letters first (at most limit, 100 by
                                             default): id, queue, reason, time, task, task id,
                                             body size; "total" counts them all
    GET  /api/dead-letters/<id>              one letter's whole record (docs/dead-letters.md)
    POST /api/dead-letters/<id>/requeue      send its original message back to its queue

Reads go to the broker (``Transport.dead_letters``) in Starlette's thread pool. The requeue
is an action: the guard in ``server`` lets it through only with credentials, as the control
actions. Answers 404 for an unknown letter, 409 for one that is not a message, 502 when the
broker fails.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from celeriac.dashboard._context import dashboard_of
from celeriac.exceptions import CeleryError
from celeriac.transports._dead_letters import record

__all__ = ["routes"]

_DEFAULT_LIMIT = 100
_MAX_LIMIT = 1000


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _summary(full: dict[str, Any]) -> dict[str, Any]:
    message = full.pop("message")
    full["body_size"] = len(message["body"])
    return full


def dead_letters(request: Request) -> JSONResponse:
    queue = request.query_params.get("queue") or None
    raw_limit = request.query_params.get("limit") or str(_DEFAULT_LIMIT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_LIMIT:
        return _error(400, f"limit must be a whole number from 1 to {_MAX_LIMIT}")
    try:
        letters = dashboard_of(request).app.transport.dead_letters(queue)
    except CeleryError as exc:
        return _error(502, str(exc))
    newest = letters[::-1][: int(raw_limit)]
    return JSONResponse(
        {"dead_letters": [_summary(record(d)) for d in newest], "total": len(letters)}
    )


def dead_letter(request: Request) -> JSONResponse:
    letter_id = request.path_params["letter_id"]
    try:
        found = dashboard_of(request).app.transport.get_dead_letter(letter_id)
    except CeleryError as exc:
        return _error(502, str(exc))
    if found is None:
        return _error(404, f"no dead letter {letter_id}")
    return JSONResponse(record(found))


async def requeue(request: Request) -> JSONResponse:
    letter_id = request.path_params["letter_id"]
    transport = dashboard_of(request).app.transport
    try:
        letter = await run_in_threadpool(transport.requeue_dead_letter, letter_id)
    except ValueError as exc:
        return _error(409, str(exc))
    except CeleryError as exc:
        return _error(502, str(exc))
    if letter is None:
        return _error(404, f"no dead letter {letter_id} (already requeued or purged?)")
    return JSONResponse({"ok": f"requeued {letter_id} to queue {letter.queue!r}"})


def routes() -> list[Route]:
    return [
        Route("/api/dead-letters", dead_letters),
        Route("/api/dead-letters/{letter_id}", dead_letter),
        Route("/api/dead-letters/{letter_id}/requeue", requeue, methods=["POST"]),
    ]
