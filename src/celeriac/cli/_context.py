"""The global options of the ``celeriac`` command (``-A``, ``-b``, ``--config``...) and the
app they name, which every subcommand reads through ``pass_ctx``."""

from __future__ import annotations

import click

from celeriac.app.base import Celery
from celeriac.cli.loading import find_app
from celeriac.exceptions import CeleryError

__all__ = ["Context", "pass_ctx", "split_names"]


class Context:
    """The global options, and the app they name (loaded when a command first asks)."""

    def __init__(
        self,
        app_spec: str | None,
        broker: str | None,
        backend: str | None,
        *,
        config: str | None = None,
        no_color: bool = False,
        quiet: bool = False,
    ) -> None:
        self.app_spec = app_spec
        self.broker = broker
        self.backend = backend
        self.config = config
        self.no_color = no_color
        self.quiet = quiet
        self._app: Celery | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            app = find_app(self.app_spec) if self.app_spec else Celery("default")
            if self.config:
                try:
                    app.config_from_object(self.config)
                except CeleryError as exc:
                    raise click.BadParameter(str(exc), param_hint="--config") from exc
            if self.broker:
                app.conf.broker_url = self.broker
            if self.backend:
                app.conf.result_backend = self.backend
            self._app = app
        return self._app

    def echo(self, message: str) -> None:
        """Print an informational line, unless ``-q/--quiet``."""
        if not self.quiet:
            click.echo(message)


pass_ctx = click.make_pass_decorator(Context)


def split_names(value: str | None) -> list[str] | None:
    """A comma-separated list of names (None when empty)."""
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    return names or None
