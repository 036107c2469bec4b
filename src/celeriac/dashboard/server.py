"""The dashboard as an ASGI app: ``create_app(celeriac_app, store, auth=...)``.

Puts together the parts (store, live feed, queue monitor, control adapter, collector), the
routes (``routes_api``: reads, ``routes_control``: actions, ``routes_live``: the page, its
event stream and ``/metrics``), the static files, and one guard in front of them all that
applies ``AuthPolicy`` (see ``auth``). With ``url_prefix`` (``--url-prefix``) every path is
served under it, for a reverse proxy that passes ``/prefix/...`` on unchanged. The
collector's threads run for the app's lifespan, so serving it (uvicorn, or Starlette's
``TestClient`` used as a context manager) is what starts them. Needs the ``dashboard``
extra (Starlette); uvicorn only to serve it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from celeriac._time import Clock, system_clock
from celeriac.dashboard import routes_api, routes_control, routes_dead_letters, routes_live
from celeriac.dashboard._context import STATIC, Dashboard, dashboard_of
from celeriac.dashboard.adapter import ControlAdapter
from celeriac.dashboard.auth import AuthPolicy, same_origin
from celeriac.dashboard.collector import Collector
from celeriac.dashboard.live import LiveFeed
from celeriac.dashboard.queues import QueueMonitor
from celeriac.dashboard.store import DashboardStore

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["STATIC", "Dashboard", "create_app", "dashboard_of"]


def create_app(
    celeriac_app: Celery,
    store: DashboardStore,
    *,
    auth: AuthPolicy | None = None,
    clock: Clock | None = None,
    collect: bool = True,
    control: ControlAdapter | None = None,
    url_prefix: str = "",
) -> Starlette:
    """The dashboard for ``celeriac_app``, keeping its history in ``store``.

    ``auth``: who may read and act (default: anyone may read, nobody may act).
    ``collect``: run the event collector and pollers while the app is served (tests that
    feed the store themselves turn it off). ``url_prefix``: serve under this path
    (``/celeriac``; the page finds the prefix in the ``root_path`` it is served with).
    """
    clock = clock or system_clock
    conf = celeriac_app.conf
    configured = [str(conf.task_default_queue)]
    configured += [q.name for q in conf.task_queues or () if getattr(q, "name", None)]
    queues = QueueMonitor(lambda: celeriac_app.transport, configured, clock)
    queues.watch(q for w in store.workers() for q in w["queues"] or ())
    feed = LiveFeed()
    control = control or ControlAdapter(celeriac_app)
    collector = (
        Collector(celeriac_app, store, feed, queues, control, clock=clock) if collect else None
    )
    state = Dashboard(
        celeriac_app, store, feed, queues, control, auth or AuthPolicy(), clock, collector
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if collector is not None:
            collector.start()
        try:
            yield
        finally:
            feed.close()
            if collector is not None:
                collector.stop()

    routes = [
        *routes_live.routes(),
        *routes_api.routes(),
        *routes_control.routes(),
        *routes_dead_letters.routes(),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    prefix = normalize_prefix(url_prefix)
    if prefix:
        routes = [Mount(prefix, routes=routes)]
    web = Starlette(routes=routes, lifespan=lifespan)
    web.state.dashboard = state
    web.add_middleware(_Guard, policy=state.auth, prefix=prefix)
    return web


def normalize_prefix(url_prefix: str) -> str:
    """``celeriac/`` -> ``/celeriac``; empty for none."""
    return "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""


class _Guard:
    """Applies the auth policy to every request but the static files (see ``auth``)."""

    def __init__(self, app: ASGIApp, policy: AuthPolicy, prefix: str = "") -> None:
        self.app = app
        self.policy = policy
        self.static = f"{prefix}/static/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.policy.host_ok(headers.get("host", "")):
            rebound = _refuse(
                403,
                "this dashboard is bound to a loopback address and refuses requests for "
                "other host names (DNS rebinding); name this host with --allowed-hosts",
            )
            await rebound(scope, receive, send)
            return
        if str(scope["path"]).startswith(self.static):
            await self.app(scope, receive, send)
            return
        query = QueryParams(scope.get("query_string", b""))
        authenticated = self.policy.authenticated(headers.get("authorization"), query.get("token"))
        host = headers.get("host", "")
        refusal = None
        if scope["method"] == "POST":
            json_body = headers.get("content-type", "").startswith("application/json")
            if not json_body or not same_origin(headers.get("origin"), host):
                refusal = _refuse(403, "actions take a JSON body from this dashboard's own page")
            elif not self.policy.may_act(authenticated, host):
                refusal = (
                    self._unauthorized()
                    if self.policy.required
                    else _refuse(
                        403,
                        "actions need credentials: start the dashboard with --auth or "
                        "--token (or, bound to localhost, --allow-unauthenticated-control)",
                    )
                )
        elif not self.policy.may_read(authenticated):
            refusal = self._unauthorized()
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _unauthorized(self) -> JSONResponse:
        scheme = 'Basic realm="celeriac dashboard"' if self.policy.users else "Bearer"
        response = _refuse(401, "authentication required (--auth user:password or --token)")
        response.headers["WWW-Authenticate"] = scheme
        return response


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
