"""What every route of the dashboard reads: the ``Dashboard`` on the Starlette app's state,
and where the static files are. ``server`` builds it; the ``routes_*`` modules take it from
the request, so they need not import the server that mounts them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request

from celeriac._time import Clock
from celeriac.dashboard.adapter import ControlAdapter
from celeriac.dashboard.auth import AuthPolicy
from celeriac.dashboard.collector import Collector
from celeriac.dashboard.live import LiveFeed
from celeriac.dashboard.queues import QueueMonitor
from celeriac.dashboard.store import DashboardStore

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["STATIC", "Dashboard", "dashboard_of"]

STATIC = Path(__file__).parent / "static"


@dataclass
class Dashboard:
    """Everything a route needs, kept on the Starlette app's state."""

    app: Celery
    store: DashboardStore
    feed: LiveFeed
    queues: QueueMonitor
    control: ControlAdapter
    auth: AuthPolicy
    clock: Clock
    collector: Collector | None

    def may_act(self, request: Request) -> bool:
        authenticated = self.auth.authenticated(
            request.headers.get("authorization"), request.query_params.get("token")
        )
        return self.auth.may_act(authenticated, request.headers.get("host", ""))


def dashboard_of(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found
