"""Celery's app attributes that plugins and test suites reach for: ``app.amqp``,
``app.loader``, ``app.connection()`` / ``connection_for_write()`` / ``connection_for_read()``.

They are thin views over Celeriac's own parts, not kombu objects:

* ``app.amqp.queues`` maps queue names to the ``Queue`` objects the settings define (and
  those created since: ``add``), ``app.amqp.router`` is the app's router, and
  ``app.amqp.default_queue`` the queue tasks go to by default.
* ``app.loader`` imports what a worker imports (``import_default_modules``), one module
  (``import_task_module``), and reads settings (``config_from_object``).
* ``app.connection()`` is a context manager standing for the broker connection: it has the
  URL (``as_uri()``, password masked), ``ensure_connection()``, the ``transport`` and the
  errors to retry on (``recoverable_connection_errors``); ``release()``/``close()`` are no-ops
  because the app keeps its connection (``app.close()`` closes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from celeriac._app_protocol import AppLike
from celeriac._imports import import_module
from celeriac.exceptions import OperationalError
from celeriac.routing import Exchange, Queue

if TYPE_CHECKING:
    from celeriac.app.routes import Router
    from celeriac.transports.base import Transport

__all__ = ["AMQP", "AppLoader", "BrokerConnection", "Queues"]


class _CompatApp(AppLike, Protocol):
    """What Celery's names for the app's parts use of it, beyond ``AppLike``."""

    def config_from_object(
        self, obj: Any, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> None: ...

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> list[str]: ...


class Queues(MutableMapping[str, Queue]):
    """The app's queues by name (Celery's ``app.amqp.queues``), read from the router."""

    def __init__(self, app: _CompatApp) -> None:
        self._app = app
        self._added: dict[str, Queue] = {}

    def _all(self) -> dict[str, Queue]:
        found = {queue.name: queue for queue in self._app.router.defined}
        return {**found, **self._added}

    def __getitem__(self, name: str) -> Queue:
        return self._all()[name]

    def __setitem__(self, name: str, queue: Queue) -> None:
        self._added[name] = queue

    def __delitem__(self, name: str) -> None:
        del self._added[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def add(self, queue: Queue | str, **options: Any) -> Queue:
        """Add a queue by object or name (``exchange``, ``routing_key`` as Queue takes)."""
        if isinstance(queue, str):
            exchange = options.pop("exchange", None) or queue
            if isinstance(exchange, str):
                exchange = Exchange(exchange, options.pop("exchange_type", "direct"))
            queue = Queue(queue, exchange, routing_key=options.pop("routing_key", queue))
        self._added[queue.name] = queue
        return queue

    def select_add(self, queue: Queue | str, **options: Any) -> Queue:
        return self.add(queue, **options)

    @property
    def consume_from(self) -> dict[str, Queue]:
        return self._all()


class AMQP:
    """Celery's ``app.amqp``: the app's queues, router and default queue."""

    def __init__(self, app: _CompatApp) -> None:
        self._app = app
        self.queues = Queues(app)
        self.Queue = Queue
        self.Exchange = Exchange

    @property
    def router(self) -> Router:
        return self._app.router

    @property
    def default_queue(self) -> Queue:
        return self._app.router.queue(None)

    @property
    def routes(self) -> Any:
        return self._app.conf.task_routes


class AppLoader:
    """Celery's ``app.loader``: imports and settings, for code written against Celery."""

    def __init__(self, app: _CompatApp) -> None:
        self.app = app

    @property
    def conf(self) -> Any:
        return self.app.conf

    def import_default_modules(self) -> list[Any]:
        return self.app.import_default_modules()

    def import_task_module(self, module: str) -> Any:
        return import_module(module)

    import_module = import_task_module

    def config_from_object(self, obj: Any, silent: bool = False) -> None:
        self.app.config_from_object(obj, silent=silent)

    def autodiscover_tasks(self, packages: Any, related_name: str = "tasks") -> list[str]:
        return self.app.autodiscover_tasks(packages, related_name, force=True)

    def init_worker(self) -> None:
        self.import_default_modules()

    def on_worker_init(self) -> None:
        """Nothing to do: the worker imports its modules itself."""

    def on_worker_process_init(self) -> None:
        """Nothing to do: each pool child opens its own connections."""


class BrokerConnection:
    """Stands for the broker connection in Celery-style code (module docstring)."""

    recoverable_connection_errors = (OperationalError, ConnectionError, OSError)
    recoverable_channel_errors: tuple[type[BaseException], ...] = ()
    connection_errors = (OperationalError, ConnectionError, OSError)
    channel_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, app: _CompatApp, url: str | None = None) -> None:
        self._app = app
        self.url = url or app.broker_url

    @property
    def transport(self) -> Transport:
        return self._app.transport

    def as_uri(self, include_password: bool = False) -> str:
        """The broker URL, its password shown as ``**`` unless asked (as kombu's)."""
        scheme, sep, rest = self.url.partition("://")
        credentials, at, host = rest.rpartition("@")
        if include_password or not at or ":" not in credentials:
            return self.url
        return f"{scheme}{sep}{credentials.split(':', 1)[0]}:**@{host}"

    def ensure_connection(self, *args: Any, **kwargs: Any) -> BrokerConnection:
        """Reach the broker now (``TransportError`` when it cannot be reached)."""
        self._app.transport.queue_length(self._app.conf.task_default_queue)
        return self

    connect = ensure_connection

    def release(self) -> None:
        """Nothing to release: the app keeps its connection (module docstring)."""

    close = release

    def __enter__(self) -> BrokerConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<BrokerConnection: {self.as_uri()}>"
