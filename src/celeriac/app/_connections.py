"""An app's connections: its transport, its result backend and its router.

Each is made on first use, once per process: a forked pool child that touches
``app.transport`` gets a fresh connection, and the parent's objects are set aside unused
(finalizing them in the child could close or checkpoint the parent's database handles).
The router is rebuilt whenever the routing settings change (``conf.generation``).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from celeriac.app._connection_options import backend_options, transport_options
from celeriac.app.routes import Router
from celeriac.app.settings import validate
from celeriac.backends import create_backend
from celeriac.backends.base import ResultBackend
from celeriac.transports import create_transport
from celeriac.transports.base import Transport

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["Connections"]

_inherited: list[object] = []  # the connections of a parent process, kept alive unused


class Connections:
    """The transport, result backend and router of ``app``, made lazily per process."""

    def __init__(self, app: AppLike) -> None:
        self.app = app
        self._pid = os.getpid()
        self._transport: Transport | None = None
        self._backend: ResultBackend | None = None
        self._backend_made = False
        self._lock = threading.RLock()
        self._router: Router | None = None
        self._router_generation = -1  # conf.generation the router was built for

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # forked: never share the parent's connections
            self._pid = os.getpid()
            # Keep the parent's objects alive but unused: finalizing them here could close
            # or checkpoint the parent's database handles from the wrong process.
            _inherited.append((self._transport, self._backend))
            self._transport = None
            self._backend = None
            self._backend_made = False
            self._lock = threading.RLock()

    def transport(self) -> Transport:
        self._check_pid()
        if self._transport is None:
            with self._lock:
                if self._transport is None:
                    app = self.app
                    validate(app.conf)
                    self._transport = create_transport(
                        app.broker_url, options=transport_options(app.conf), clock=app.clock
                    )
        return self._transport

    def backend(self) -> ResultBackend | None:
        self._check_pid()
        if not self._backend_made:
            with self._lock:
                if not self._backend_made:
                    app = self.app
                    validate(app.conf)
                    url = app.result_backend_url
                    self._backend = (
                        create_backend(
                            url,
                            options=backend_options(app.conf, url, app.broker_url),
                            clock=app.clock,
                        )
                        if url
                        else None
                    )
                    if self._backend is not None:
                        self._backend.app_results = app.results
                    self._backend_made = True
        return self._backend

    def router(self) -> Router:
        """The router for the current routing settings (rebuilt when they change)."""
        conf = self.app.conf
        router = self._router
        if router is None or self._router_generation != conf.generation:
            router = Router(
                conf.task_routes,
                conf.task_queues,
                default_queue=conf.task_default_queue,
                create_missing=bool(conf.task_create_missing_queues),
                default_exchange=conf.task_default_exchange,
                default_exchange_type=conf.task_default_exchange_type,
                default_routing_key=conf.task_default_routing_key,
                max_priority=conf.task_queue_max_priority,
                default_queue_type=conf.task_default_queue_type,
                missing_queue_type=conf.task_create_missing_queue_type,
                missing_exchange_type=conf.task_create_missing_queue_exchange_type,
            )
            self._router, self._router_generation = router, conf.generation
        return router

    def forget_router(self) -> None:
        """Build the router again on next use (the settings were replaced)."""
        self._router = None

    def close(self) -> None:
        """Close the transport and the result backend (made again on next use); in a
        forked child the parent's are set aside, never closed from here."""
        self._check_pid()
        with self._lock:
            if self._transport is not None:
                self._transport.close()
            if self._backend is not None:
                self._backend.close()
            self._transport = None
            self._backend = None
            self._backend_made = False
