"""The JSON API's actions: POSTs with a JSON body (``{}`` when there is nothing to say).

    POST /api/tasks/<id>/revoke                  revoke: a worker that has not started it
                                                 will not run it
    POST /api/tasks/<id>/terminate               revoke, and kill it where it runs
                                                 ({"signal": "SIGTERM"} by default)
    POST /api/tasks/<name>/rate_limit            {"rate_limit": "10/m", "worker": optional}
    POST /api/workers/<name>/pool/grow           {"n": 1}
    POST /api/workers/<name>/pool/shrink         {"n": 1}
    POST /api/workers/<name>/shutdown

The guard in ``server`` has already checked credentials. Answers: 200 ``{"ok": ...,
"replies": ...}`` with the workers' replies where remote control collects them; 400 for a
bad body; 503 when the app has no remote control; 502 when the broker fails.
"""

from __future__ import annotations

import json
import re
import signal as signals
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from celeriac.dashboard._context import Dashboard, dashboard_of
from celeriac.dashboard.adapter import ControlUnavailable
from celeriac.exceptions import CeleryError

__all__ = ["routes"]

_RATE = re.compile(r"^(\d+(\.\d+)?(/[smh])?)?$")


class _BadBody(ValueError):
    pass


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _BadBody(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _BadBody("the body must be a JSON object")
    return body


def _count(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1000:
        raise _BadBody(f"n must be a whole number from 1 to 1000, not {n!r}")
    return n


def _jsonable(replies: Any) -> Any:
    try:
        json.dumps(replies)
    except (TypeError, ValueError):
        return repr(replies)
    return replies


async def _act(
    request: Request, action: Callable[[Dashboard, dict[str, Any]], tuple[str, Any]]
) -> JSONResponse:
    from starlette.concurrency import run_in_threadpool

    board = dashboard_of(request)
    try:
        body = await _body(request)
        ok, replies = await run_in_threadpool(action, board, body)
    except _BadBody as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except ControlUnavailable as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    except CeleryError as exc:
        return JSONResponse({"error": str(exc)}, status_code=502)
    return JSONResponse({"ok": ok, "replies": _jsonable(replies)})


async def revoke(request: Request) -> JSONResponse:
    task_id = request.path_params["task_id"]

    def action(board: Dashboard, _body: dict[str, Any]) -> tuple[str, Any]:
        board.control.revoke(task_id)
        return f"revoked {task_id}", None

    return await _act(request, action)


async def terminate(request: Request) -> JSONResponse:
    task_id = request.path_params["task_id"]

    def action(board: Dashboard, body: dict[str, Any]) -> tuple[str, Any]:
        name = str(body.get("signal") or "SIGTERM").upper()
        if not name.startswith("SIG") or not hasattr(signals, name):
            raise _BadBody(f"signal must name a signal such as SIGTERM or SIGKILL, not {name!r}")
        board.control.revoke(task_id, terminate=True, signal=name)
        return f"terminating {task_id} with {name}", None

    return await _act(request, action)


async def rate_limit(request: Request) -> JSONResponse:
    task_name = request.path_params["task_name"]

    def action(board: Dashboard, body: dict[str, Any]) -> tuple[str, Any]:
        rate = str(body.get("rate_limit", "")).strip()
        if not _RATE.match(rate):
            raise _BadBody(f"rate_limit must look like 10/s, 10/m, 10/h or 10, not {rate!r}")
        worker = body.get("worker") or None
        replies = board.control.rate_limit(task_name, rate, str(worker) if worker else None)
        return f"rate limit of {task_name} set to {rate or 'none'}", replies

    return await _act(request, action)


async def pool(request: Request) -> JSONResponse:
    worker, direction = request.path_params["worker"], request.path_params["direction"]
    if direction not in ("grow", "shrink"):
        return JSONResponse({"error": "a pool can grow or shrink"}, status_code=404)

    def action(board: Dashboard, body: dict[str, Any]) -> tuple[str, Any]:
        n = _count(body)
        if direction == "grow":
            answer = f"growing the pool of {worker} by {n}", board.control.pool_grow(worker, n)
        else:
            answer = f"shrinking the pool of {worker} by {n}", board.control.pool_shrink(worker, n)
        if board.collector is not None:
            board.collector.refresh_soon()  # show the new size without waiting
        return answer

    return await _act(request, action)


async def shutdown(request: Request) -> JSONResponse:
    worker = request.path_params["worker"]

    def action(board: Dashboard, _body: dict[str, Any]) -> tuple[str, Any]:
        board.control.shutdown(worker)
        return f"shutting {worker} down", None

    return await _act(request, action)


def routes() -> list[Route]:
    return [
        Route("/api/tasks/{task_id}/revoke", revoke, methods=["POST"]),
        Route("/api/tasks/{task_id}/terminate", terminate, methods=["POST"]),
        Route("/api/tasks/{task_name}/rate_limit", rate_limit, methods=["POST"]),
        Route("/api/workers/{worker}/pool/{direction}", pool, methods=["POST"]),
        Route("/api/workers/{worker}/shutdown", shutdown, methods=["POST"]),
    ]
