"""The JSON API's reads: what the page shows, for scripts as well.

    GET /api/workers                       workers, online or not, with pool and load
    GET /api/tasks?state=&name=&worker=&since=&until=&after=&limit=
                                           a page of tasks, newest first; "next" is the
                                           cursor to pass as after= for the next page
    GET /api/tasks/<id>                    one task with args, result, traceback, ...
    GET /api/queues                        queues: length, consumers, rates
    GET /api/stats/timeseries?minutes=&step=   tasks entering each state per step
    GET /api/config                        what this dashboard allows (for the page)

Times (``since``, ``until``) are Unix seconds or ISO-8601. Handlers are plain functions,
which Starlette runs in its thread pool, so a store read never blocks the event loop.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from celeriac.dashboard._context import dashboard_of
from celeriac.dashboard.queries import TaskFilter
from celeriac.transports import mask_password

__all__ = ["routes"]

_MAX_LIMIT = 500


class _BadRequest(ValueError):
    pass


def _time(request: Request, name: str) -> float | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _BadRequest(
            f"{name} must be Unix seconds or an ISO-8601 time, not {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _BadRequest(f"{name} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise _BadRequest(f"{name} must be between {low} and {high}, not {number}")
    return number


def _bad(exc: Exception) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=400)


def workers(request: Request) -> JSONResponse:
    return JSONResponse({"workers": dashboard_of(request).store.workers()})


def tasks(request: Request) -> JSONResponse:
    params = request.query_params
    try:
        filt = TaskFilter(
            state=params.get("state") or None,
            name=params.get("name") or None,
            worker=params.get("worker") or None,
            since=_time(request, "since"),
            until=_time(request, "until"),
        )
        limit = _int(request, "limit", 50, 1, _MAX_LIMIT)
        page = dashboard_of(request).store.tasks(filt, after=params.get("after"), limit=limit)
    except ValueError as exc:  # _BadRequest, or a cursor that is not one
        return _bad(exc)
    return JSONResponse({"tasks": page.tasks, "next": page.next})


def task(request: Request) -> JSONResponse:
    task_id = request.path_params["task_id"]
    found = dashboard_of(request).store.task(task_id)
    if found is None:
        return JSONResponse({"error": f"no task {task_id} in the history"}, status_code=404)
    return JSONResponse(found)


def queues(request: Request) -> JSONResponse:
    return JSONResponse({"queues": dashboard_of(request).queues.snapshot()})


def timeseries(request: Request) -> JSONResponse:
    board = dashboard_of(request)
    try:
        minutes = _int(request, "minutes", 60, 1, 7 * 24 * 60)
        step = _int(request, "step", 60, 60, 86400)
    except _BadRequest as exc:
        return _bad(exc)
    since = board.clock.time() - minutes * 60
    points = board.store.timeseries(since, step)
    return JSONResponse({"step": max(60, step - step % 60), "points": points})


def config(request: Request) -> JSONResponse:
    board = dashboard_of(request)
    body: dict[str, Any] = {
        "can_act": board.may_act(request),
        "auth": board.auth.schemes,
        "remote_control": board.control.available,
        "task_names": board.store.task_names(),
        "broker": _masked(board.app.broker_url),
    }
    return JSONResponse(body)


def _masked(url: str) -> str:
    return mask_password(url)


def routes() -> list[Route]:
    return [
        Route("/api/workers", workers),
        Route("/api/tasks", tasks),
        Route("/api/tasks/{task_id}", task),
        Route("/api/queues", queues),
        Route("/api/stats/timeseries", timeseries),
        Route("/api/config", config),
    ]
