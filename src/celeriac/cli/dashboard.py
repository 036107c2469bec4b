"""``celeriac dashboard`` (alias ``flower``): serve the live web dashboard.

celeriac -A proj dashboard                                  http://127.0.0.1:5555, read-only
celeriac -A proj dashboard --auth admin:secret --address 0.0.0.0
celeriac -A proj dashboard --token "$TOKEN" --retention-days 30
celeriac -A proj dashboard --allow-unauthenticated-control  localhost only: act without login
celeriac -A proj dashboard --url-prefix /celeriac --allowed-hosts ops.example.com  behind a proxy

Needs the ``dashboard`` extra (``pip install 'celeriac[dashboard]'``: Starlette, uvicorn).
Task history goes to ``--db`` (default: ``celeriac-dashboard.sqlite`` beside the SQLite
broker's file).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import click

from celeriac.exceptions import CeleryError, CeleryWarning

__all__ = ["dashboard"]

_EXTRA = "the dashboard needs the 'dashboard' extra: pip install 'celeriac[dashboard]'"


def _app(ctx: click.Context) -> Any:
    root = ctx.find_root().obj
    if root is None or not hasattr(root, "app"):
        raise click.UsageError("run through the celeriac command: celeriac -A proj dashboard")
    return root.app


def _require_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        missing = (exc.name or "?").split(".")[0]
        raise click.ClickException(f"{_EXTRA} ({missing} is not installed)") from exc


@click.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=5555, show_default=True, help="Port to listen on.")
@click.option(
    "--auth",
    "--basic-auth",
    "auth",
    multiple=True,
    metavar="USER:PASSWORD",
    help="Require HTTP basic auth (repeat for more users).",
)
@click.option(
    "--token", "tokens", multiple=True, help="Accept this bearer token (or ?token= in the URL)."
)
@click.option(
    "--allow-unauthenticated-control",
    is_flag=True,
    help="Allow actions without credentials; honoured only when bound to a loopback address.",
)
@click.option(
    "--allowed-hosts",
    "allowed_hosts",
    multiple=True,
    metavar="HOST[,HOST]",
    help="Host names requests may use besides loopback ones (.example.com: and subdomains).",
)
@click.option(
    "--url-prefix",
    default="",
    metavar="PATH",
    help="Serve under this path, for a reverse proxy that passes it on (e.g. /celeriac).",
)
@click.option(
    "--retention-days",
    type=click.FloatRange(min=0, min_open=True),
    default=7.0,
    show_default=True,
    help="Keep task history this long.",
)
@click.option(
    "--max-tasks",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Keep at most this many tasks in the history.",
)
@click.option("--db", type=click.Path(dir_okay=False), help="The history store (SQLite file).")
@click.option("-l", "--loglevel", default="WARNING", show_default=True, help="Logging level.")
@click.pass_context
def dashboard(
    ctx: click.Context,
    address: str,
    port: int,
    auth: tuple[str, ...],
    tokens: tuple[str, ...],
    allow_unauthenticated_control: bool,
    allowed_hosts: tuple[str, ...],
    url_prefix: str,
    retention_days: float,
    max_tasks: int,
    db: str | None,
    loglevel: str,
) -> None:
    """Serve the web dashboard: workers, tasks, queues, live, with actions and /metrics."""
    _require_extra()
    import uvicorn

    # lazy: the CLI loads only what the command it runs needs
    from celeriac.dashboard.auth import AuthPolicy

    # lazy: the CLI loads only what the command it runs needs
    from celeriac.dashboard.server import create_app, normalize_prefix

    # lazy: the CLI loads only what the command it runs needs
    from celeriac.dashboard.store import DashboardStore, default_path

    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s] %(message)s")
    app = _app(ctx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CeleryWarning)
        try:
            policy = AuthPolicy.from_options(
                auth=auth,
                tokens=tokens,
                address=address,
                allowed_hosts=allowed_hosts,
                allow_unauthenticated_control=allow_unauthenticated_control,
            )
        except CeleryError as exc:
            raise click.BadParameter(str(exc), param_hint="--auth") from exc
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    try:
        store = DashboardStore(
            db or default_path(app.broker_url),
            retention_days=retention_days,
            max_tasks=max_tasks,
            clock=app.clock,
        )
        web = create_app(app, store, auth=policy, url_prefix=url_prefix)
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    acting = (
        "with actions"
        if policy.required or policy.allow_unauthenticated_control
        else ("read-only (actions need --auth or --token)")
    )
    root = normalize_prefix(url_prefix)
    click.echo(f"Dashboard on http://{address}:{port}{root}/ {acting}; history in {store.path}")
    config = uvicorn.Config(
        web, host=address, port=port, log_level=loglevel.lower(), timeout_graceful_shutdown=2
    )
    feed = web.state.dashboard.feed

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            feed.close()  # ends the open event streams, so the server stops at once
            super().handle_exit(sig, frame)

    try:
        Server(config).run()
    finally:
        store.close()
