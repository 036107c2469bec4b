"""The start-up banner: what the worker runs, against which broker and store."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import TYPE_CHECKING

from celeriac._masking import mask_url
from celeriac._version import __version__
from celeriac.transports.base import Transport

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.routing import Queue

__all__ = ["banner", "describe_url"]


def describe_url(url: str | None) -> str:
    """A URL with every credential masked (``mask_url``), and a SQLite path made absolute."""
    if not url:
        return "disabled"
    scheme, _, rest = url.partition("://")
    if scheme in ("sqlite", "db+sqlite") and rest.startswith("/"):
        import os

        path = rest[1:]
        return f"{scheme}:///{os.path.abspath(path)}" if path else url
    return mask_url(url)


def banner(
    app: Celery,
    *,
    hostname: str,
    pool: str,
    concurrency: int,
    queues: Sequence[Queue],
    transport: Transport,
    prefetch_multiplier: int | None = None,
) -> str:
    """The start-up summary; ``prefetch_multiplier`` is the worker's (default: the setting)."""
    if prefetch_multiplier is None:
        prefetch_multiplier = app.conf.worker_prefetch_multiplier

    lines = [
        f"celeriac {__version__} -- {hostname}",
        f"  {platform.platform()}",
        "",
        "[config]",
        f"  .> app:         {app.main or '__main__'}:{id(app):#x}",
        f"  .> transport:   {describe_url(app.broker_url)}",
        f"  .> results:     {describe_url(app.result_backend_url)}",
        f"  .> concurrency: {concurrency} ({pool})",
        f"  .> acks:        {'late' if app.conf.task_acks_late else 'early'}"
        f"  prefetch: {prefetch_multiplier} x concurrency",
        "",
        "[queues]",
    ]
    for queue in queues:
        exch = queue.bound_exchange
        lines.append(
            f"  .> {queue.name:<16} exchange={exch.name or queue.name}({exch.type}) "
            f"key={queue.binding_key}"
        )
    lines += ["", "[tasks]"]
    lines += [f"  . {name}" for name in sorted(app.tasks.regular())]
    return "\n".join(lines) + "\n"
