"""The web dashboard: ``celeriac -A proj dashboard`` (alias ``flower``).

``create_app(celeriac_app, DashboardStore(path), auth=AuthPolicy(...))`` is an ASGI app to
serve with any ASGI server. Parts, bottom to top:

    fold.py, store.py, queries.py   task history in SQLite, folded from Celery events
    live.py                         recent changes, for Server-Sent Events
    queues.py                       queue lengths, consumers and rates, sampled
    adapter.py                      the one place that knows the events and control APIs
    collector.py                    threads: events -> store + live view; result store polls
    auth.py                         who may read, who may act (basic auth, tokens, localhost)
    metrics.py                      Prometheus text exposition
    routes_*.py, server.py          the ASGI app (Starlette): JSON API, page, stream
    static/                         index.html, app.js, app.css: hand-written, no build step

Starlette and uvicorn are the ``dashboard`` extra and are imported only by ``server`` and the
routes (``create_app`` here imports them when first asked for), so ``pip install celeriac``
without the extra still imports this package.
"""

from __future__ import annotations

from typing import Any

from celeriac.dashboard.auth import AuthPolicy
from celeriac.dashboard.store import DashboardStore
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["AuthPolicy", "DashboardStore", "create_app"]


def __getattr__(name: str) -> Any:
    if name != "create_app":
        raise AttributeError(f"module 'celeriac.dashboard' has no attribute {name!r}")
    try:
        # lazy: the ASGI app and its dependencies only when one is made
        from celeriac.dashboard.server import create_app
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"the dashboard needs the 'dashboard' extra: pip install 'celeriac[dashboard]' "
            f"({(exc.name or '?').split('.')[0]} is not installed)"
        ) from exc
    return create_app
