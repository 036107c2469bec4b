"""The ``Celery`` app: settings, the task registry, and the broker and result store it uses.

An app is configured at the edge (constructor keywords, ``config_from_object``,
``conf.update``) and builds its transport and result backend lazily on first use, once per
process: a forked pool child that touches ``app.transport`` gets a fresh connection; its
router is rebuilt whenever the routing settings change. With no broker configured the app
uses the embedded SQLite file ``celeriac.sqlite`` in the current directory for both messages
and results.

``current_app`` is the app of the task running in this thread, else the app set current in
this thread, else the default (``set_default``, else the app set current last anywhere).
A ``shared_task`` is registered as a copy bound to each app, so every app runs it as its own.

Beside it: ``_connections`` (transport, result backend, router), ``celeriac._state`` (which
app is current), ``_tasks`` (making tasks; ``shared_task``), ``_discovery`` (autodiscovery).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, cast, overload

from celeriac import _state, signals
from celeriac._imports import import_module
from celeriac._lamport import LamportClock
from celeriac._time import Clock, system_clock
from celeriac.app._cleanup import register_cleanup
from celeriac.app._compat import AMQP, AppLoader, BrokerConnection
from celeriac.app._connections import Connections
from celeriac.app._discovery import discover
from celeriac.app._fixups import install_fixups
from celeriac.app._task_class import TaskClassSpec, resolve_task_class
from celeriac.app._tasks import adopt_shared_tasks, make_task, shared_task
from celeriac.app.bugreport import bugreport
from celeriac.app.control import Control
from celeriac.app.producer import Producer
from celeriac.app.registry import TaskRegistry
from celeriac.app.results import ResultStore
from celeriac.app.routes import Router
from celeriac.app.security import setup_security
from celeriac.app.settings import Settings, resolve_config_object, settings_from_object
from celeriac.backends.base import ResultBackend
from celeriac.canvas import Signature, signature
from celeriac.canvas.builtins import register_builtins
from celeriac.events import Events
from celeriac.exceptions import ImproperlyConfigured
from celeriac.periodic.entries import add_periodic_task
from celeriac.result import AsyncResult, GroupResult, ResultSet
from celeriac.task import Task
from celeriac.transports.base import Transport

if TYPE_CHECKING:
    from celeriac.app.control import Control
    from celeriac.events import Events

__all__ = ["DEFAULT_URL", "Celery", "current_app", "shared_task"]

P = ParamSpec("P")
R = TypeVar("R")

#: The embedded default for both broker and results.
DEFAULT_URL = "sqlite:///celeriac.sqlite"


def current_app() -> Celery:
    """The app of the task running here; else this thread's current app; else a default.

    The default is the app given to ``set_default()``, else the app set as current last in
    any thread (so a worker's pool threads see the app their tasks belong to), else a new
    app named ``default``.
    """
    app = _state.current_or_none()
    if app is None:
        app = Celery("default")
    return cast("Celery", app)


class Celery:
    """A Celeriac application: ``Celery('proj', broker=..., backend=...)``."""

    def __init__(
        self,
        main: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        include: Sequence[str] | None = None,
        *,
        set_as_current: bool = True,
        namespace: str | None = None,
        config_source: Any = None,
        clock: Clock | None = None,
        strict_typing: bool = True,
        task_cls: TaskClassSpec = None,
        **settings: Any,
    ) -> None:
        self.main = main
        self._task_cls_spec: TaskClassSpec = task_cls  # resolved on first use (app.Task)
        self._task_cls: type[Task[Any, Any]] | None = None
        self._deferred_shared: list[Task[Any, Any]] = []  # until a task_cls path imports
        if task_cls is not None and not isinstance(task_cls, str):
            self._task_cls = resolve_task_class(task_cls)  # a class is checked at once
        self.clock: Clock = clock or system_clock
        self.strict_typing = strict_typing
        self.namespace = namespace
        self.conf = Settings()
        self.tasks = TaskRegistry()
        self.on_after_configure = signals.Signal("on_after_configure")
        self.on_after_finalize = signals.Signal("on_after_finalize")
        self.configured = False  # on_after_configure was sent (beat sends it otherwise)
        self.oid = str(uuid.uuid4())
        self._thread_oid = threading.local()
        self._connections = Connections(self)
        self._autodiscover: list[tuple[Any, str]] = []
        self.producer = Producer(self)
        self.results = ResultStore(self, lambda: self.backend)
        self.lamport_clock = LamportClock()  # Celery's app.clock: stamps control and events
        self._control: Control | None = None
        self._events: Events | None = None
        if config_source is not None:
            self.config_from_object(config_source, namespace=namespace)
        if settings:
            self.conf.merge(settings, stacklevel=2)
        # Set one by one: these may go with old names in ``settings`` (Celery allows it).
        if broker is not None:
            self.conf["broker_url"] = broker
        if backend is not None:
            self.conf["result_backend"] = backend
        if include:
            self.conf["include"] = tuple(include)
        register_builtins(self)
        register_cleanup(self)
        install_fixups(self)
        adopt_shared_tasks(self)
        if set_as_current:
            self.set_current()

    # -- configuration ----------------------------------------------------------------------

    def config_from_object(
        self, obj: Any, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> None:
        """Load settings from a module, its path, an object, or ``'django.conf:settings'``."""
        try:
            source = resolve_config_object(obj)
        except ImproperlyConfigured:
            if silent:
                return
            raise
        self.conf.update(settings_from_object(source, namespace=namespace or self.namespace))
        install_fixups(self, obj)
        self._reset_connections()
        self.configured = True
        self.on_after_configure.send(sender=self, source=source)

    def config_from_envvar(self, variable_name: str, silent: bool = False) -> None:
        module = os.environ.get(variable_name)
        if not module:
            if silent:
                return
            raise ImproperlyConfigured(f"Environment variable {variable_name!r} is not set")
        self.config_from_object(module, silent=silent)

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> list[str]:
        """Import ``<package>.<related_name>`` for each package that has one.

        As in Celery this waits until the worker imports its modules
        (``import_default_modules``), so a tasks module may import the module that defines
        the app; ``force=True`` imports now. ``packages`` may be a callable returning them;
        None means Django's ``INSTALLED_APPS``. Returns the modules imported now.
        """
        if not force:
            self._autodiscover.append((packages, related_name))
            return []
        return discover(packages, related_name)

    def import_default_modules(self, extra: Sequence[str] = ()) -> list[Any]:
        """Import the modules named by ``imports`` and ``include`` (what a worker runs), then
        ``extra`` (the worker's ``-I``).

        Runs the autodiscovery waiting for it too.
        """
        signals.import_modules.send(sender=self)
        pending, self._autodiscover = self._autodiscover, []
        for packages, related_name in pending:
            self.autodiscover_tasks(packages, related_name, force=True)
        names = [*(self.conf.imports or ()), *(self.conf.include or ()), *extra]
        modules = [import_module(name) for name in names]
        self.Task  # noqa: B018  # the task class, and the shared tasks waiting for it
        return modules

    # -- tasks ------------------------------------------------------------------------------

    @overload
    def task(self, fun: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, *, bind: Literal[True], **options: Any
    ) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...

    @overload
    def task(
        self, *, bind: Literal[False] = False, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(self, *args: Any, bind: bool = False, **options: Any) -> Any:
        """Decorate a function as a task: ``@app.task`` or ``@app.task(bind=True, ...)``."""

        def create(function: Callable[..., Any], stacklevel: int = 4) -> Task[Any, Any]:
            return self._create_task(function, {**options, "bind": bind}, stacklevel)

        if len(args) == 1 and callable(args[0]):
            return create(args[0], stacklevel=5)
        if args:
            raise TypeError("@app.task takes the function, or keyword options only")
        return create

    def _create_task(
        self, fun: Callable[..., Any], options: dict[str, Any], stacklevel: int = 2
    ) -> Task[Any, Any]:
        default_name = self.gen_task_name(fun.__name__, fun.__module__)
        task = make_task(
            fun,
            options,
            app=self,
            default_name=default_name,
            stacklevel=stacklevel,
            default_base=Task if options.get("base") else self.Task,
        )
        self.register_task(task)
        return task

    def _add_shared(self, task: Task[Any, Any]) -> None:
        """Register this app's own copy of a shared task (unless the name is taken), made
        of this app's task class when the shared task names no ``base``."""
        if task.name in self.tasks:
            return
        recipe = getattr(task, "_shared_recipe", None)
        if recipe is not None and self._task_cls is None:
            try:
                self.Task  # noqa: B018  # resolve a 'module:Class' path now, if it imports
            except ImproperlyConfigured:  # not yet (it may import this app): on first use
                self._deferred_shared.append(task)
                return
        if recipe is not None and self.Task is not Task:
            fun, options, default_name = recipe
            own = make_task(
                fun,
                options,
                app=self,
                default_name=default_name,
                stacklevel=2,
                default_base=self.Task,
                warn=False,
            )
            self.register_task(own)
        else:
            self.register_task(task.bound_copy(self))

    def register_task(self, task: Task[Any, Any] | type[Task[Any, Any]]) -> Task[Any, Any]:
        """Register a task instance (or class) with this app."""
        instance = task() if isinstance(task, type) else task
        if not instance.name:
            cls = type(instance)
            instance.name = self.gen_task_name(cls.__name__, cls.__module__)
        instance.bind(self)
        self.tasks.register(instance)
        return instance

    def gen_task_name(self, name: str, module: str) -> str:
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{name}"

    def add_periodic_task(
        self,
        schedule: Any,
        sig: Any,
        args: Any = (),
        kwargs: Any = (),
        name: str | None = None,
        **opts: Any,
    ) -> str:
        """Add an entry to ``beat_schedule`` (Celery's API; see ``celeriac.beat``)."""
        return add_periodic_task(self, schedule, sig, args, kwargs, name, **opts)

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Send a task by name, whether or not it is registered here."""
        return self.producer.send(name, args, kwargs, **options)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult[Any]:
        return AsyncResult(task_id, app=self, **kwargs)

    def GroupResult(
        self, id: str | None = None, results: Sequence[Any] | None = None, **kwargs: Any
    ) -> GroupResult:
        return GroupResult(id, results, app=self, **kwargs)

    def signature(self, *args: Any, **kwargs: Any) -> Signature[Any]:
        """A signature bound to this app: ``app.signature('tasks.add', (2, 2))``."""
        return signature(*args, app=self, **kwargs)

    def control_revoke(self, task_id: str, *, terminate: bool = False, signal: Any = None) -> None:
        """Revoke ``task_id``: stored REVOKED unless it started, and told to every worker."""
        self.control.revoke(task_id, terminate=terminate, signal=signal or "SIGTERM")

    def setup_security(
        self,
        allowed_serializers: Iterable[str] | None = None,
        key: str | None = None,
        key_password: str | bytes | None = None,
        cert: str | None = None,
        store: str | None = None,
        digest: str | None = None,
        serializer: str = "json",
    ) -> None:
        """Sign the messages this process sends and check those it reads (docs/security.md)."""
        setup_security(
            self, allowed_serializers, key, key_password, cert, store, digest, serializer
        )

    @property
    def control(self) -> Control:
        """Remote control of the workers: ``app.control.inspect().active()``, ``revoke``, ..."""
        if self._control is None:
            self._control = Control(self)
        return self._control

    @property
    def events(self) -> Events:
        """Monitoring events: ``app.events.Receiver``, ``State``, ``Dispatcher``."""
        if self._events is None:
            self._events = Events(self)
        return self._events

    # -- connections ------------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        return str(self.conf.broker_url or DEFAULT_URL)

    @property
    def result_backend_url(self) -> str | None:
        url = self.conf.result_backend
        if url:
            return str(url)
        scheme = self.broker_url.partition("://")[0]
        return self.broker_url if scheme in ("sqlite", "memory") else None

    @property
    def transport(self) -> Transport:
        return self._connections.transport()

    @property
    def backend(self) -> ResultBackend | None:
        return self._connections.backend()

    @property
    def router(self) -> Router:
        """The router for the current routing settings (rebuilt when they change)."""
        return self._connections.router()

    # -- Celery's names for the parts (celeriac.app._compat) ------------------------------

    @cached_property
    def amqp(self) -> AMQP:
        """Celery's ``app.amqp``: ``queues`` by name, ``router``, ``default_queue``."""
        return AMQP(self)

    @cached_property
    def loader(self) -> AppLoader:
        """Celery's ``app.loader``: ``import_default_modules()`` and friends."""
        return AppLoader(self)

    def bugreport(self) -> str:
        """Versions, platform and (masked) settings for a bug report, in Celery's layout."""
        return bugreport(self)

    def connection_for_write(self, url: str | None = None, **_: Any) -> BrokerConnection:
        """The broker connection, as a context manager (``celeriac.app._compat``)."""
        return BrokerConnection(self, url)

    connection = connection_for_write
    connection_for_read = connection_for_write
    broker_connection = connection_for_write

    @property
    def ResultSet(self) -> Callable[..., ResultSet]:
        """``app.ResultSet(results)``: a ResultSet bound to this app."""
        return functools.partial(ResultSet, app=self)

    def add_defaults(self, defaults: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> None:
        """Add default values (a mapping, or a callable returning one) below every setting
        given explicitly, as Celery's; names outside Celery's table are allowed (plugins)."""
        self.conf.add_defaults(defaults() if callable(defaults) else defaults)

    def _reset_connections(self) -> None:
        self.close()
        self._connections.forget_router()

    def close(self) -> None:
        """Close the broker and result store connections (reopened on next use).

        In a forked child the parent's connections are set aside, never closed from here.
        """
        self._connections.close()

    def __enter__(self) -> Celery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- identity and time ------------------------------------------------------------------

    @property
    def thread_oid(self) -> str:
        oid: str | None = getattr(self._thread_oid, "value", None)
        if oid is None:
            oid = str(uuid.uuid3(uuid.UUID(self.oid), str(threading.get_ident())))
            self._thread_oid.value = oid
        return oid

    @property
    def origin(self) -> str:
        return f"gen{os.getpid()}@{socket.gethostname()}"

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), tz=dt.UTC)

    def set_current(self) -> None:
        """Make this the current app of this thread (and of threads that set none)."""
        _state.set_current(self)

    def set_default(self) -> None:
        """Make this the app of every thread that sets no current app of its own."""
        _state.set_default(self)

    @property
    def Task(self) -> type[Task[Any, Any]]:
        """The class this app's tasks are made of: ``task_cls`` (a class or its
        ``'module:Class'`` path), else ``celeriac.Task``. Assignable, as in Celery."""
        if self._task_cls is None:
            self._task_cls = resolve_task_class(self._task_cls_spec)
            deferred, self._deferred_shared = self._deferred_shared, []
            for task in deferred:
                self._add_shared(task)
        return self._task_cls

    @Task.setter
    def Task(self, value: TaskClassSpec) -> None:
        self._task_cls = resolve_task_class(value)

    def uses_default_task_class(self) -> bool:
        """Whether no ``task_cls`` was given nor ``app.Task`` set (a fixup may then choose
        one: Django's makes ``DjangoTask`` the default, as Celery's does)."""
        return self._task_cls_spec is None and self._task_cls in (None, Task)

    def __repr__(self) -> str:
        return f"<Celery {self.main or '__main__'} at {id(self):#x}>"


_state.set_app_factory(lambda: Celery("default"))
