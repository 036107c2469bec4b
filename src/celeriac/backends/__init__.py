"""Result backends: where task states and results are kept, chosen by the URL's scheme.

``create_backend(url)`` imports only the module the scheme needs, so a store's client
library is required only when that store is used::

    memory://[name]        cache+memory://[name]      celeriac.backends.memory.MemoryBackend
    sqlite:///rel.sqlite   sqlite:////abs.sqlite      celeriac.backends.sqlite.SQLiteBackend
    db+postgresql://  db+mysql://  db+sqlite:///...   celeriac.backends.database.DatabaseBackend
    db+<dialect>+<driver>://                          (SQLAlchemy 2, Celery's tables)
    redis://  rediss://  redis+socket://  sentinel:// celeriac.backends.redis.RedisBackend
                                                      (Celery's keys and JSON)
    rpc://                                            celeriac.backends.rpc.RpcBackend (results as
                                                      messages to the client, via the AMQP broker)
    django-db  django-cache                           celeriac.contrib.django.backends (the Django
                                                      project's database or cache)

Every implementation satisfies ``celeriac.backends.base.ResultBackend``, declares what it
can do in its class's ``capabilities`` (``BackendCapabilities``; ``backend_class(url)``
reads them without building a backend), and passes the suite in
``tests/conformance/test_backend_conformance.py``, which skips what a backend's
capabilities say it cannot do.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from celeriac._masking import mask_url
from celeriac._time import Clock, system_clock
from celeriac.backends.base import BackendCapabilities, ResultBackend
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["BackendCapabilities", "ResultBackend", "backend_class", "create_backend"]

# scheme -> (module, class); the module is imported only when its scheme is asked for.
_IMPLEMENTATIONS: dict[str, tuple[str, str]] = {
    "memory": ("celeriac.backends.memory", "MemoryBackend"),
    "cache+memory": ("celeriac.backends.memory", "MemoryBackend"),
    "sqlite": ("celeriac.backends.sqlite", "SQLiteBackend"),
    "db+sqlite": ("celeriac.backends.database", "DatabaseBackend"),
    "db+postgresql": ("celeriac.backends.database", "DatabaseBackend"),
    "db+mysql": ("celeriac.backends.database", "DatabaseBackend"),
    "redis": ("celeriac.backends.redis", "RedisBackend"),
    "rediss": ("celeriac.backends.redis", "RedisBackend"),
    "redis+socket": ("celeriac.backends.redis", "RedisBackend"),
    "sentinel": ("celeriac.backends.redis", "RedisBackend"),
    "rpc": ("celeriac.backends.rpc", "RpcBackend"),
}
# Names without "://", as django-celery-results spells them.
_NAMED: dict[str, tuple[str, str]] = {
    "django-db": ("celeriac.contrib.django.backends", "DjangoDBBackend"),
    "django-cache": ("celeriac.contrib.django.backends", "DjangoCacheBackend"),
}


class _BackendClass(Protocol):
    """How every implementation is constructed, and what it can do."""

    capabilities: BackendCapabilities

    def __call__(
        self, url: str, *, options: Mapping[str, Any] | None, clock: Clock
    ) -> ResultBackend: ...


def create_backend(
    url: str,
    *,
    options: Mapping[str, Any] | None = None,
    clock: Clock = system_clock,
) -> ResultBackend:
    """The result backend ``url`` names, given its options (unknown keys are ignored).

    Raises ``ImproperlyConfigured`` for an unknown scheme, a missing client library, or a
    URL the implementation rejects.
    """
    return backend_class(url)(url, options=options, clock=clock)


def backend_class(url: str) -> _BackendClass:
    """The class of the result backend ``url`` names, its module imported, none built (so
    its ``capabilities`` are read before anything connects).

    Raises ``ImproperlyConfigured`` for an unknown scheme or a missing client library.
    """
    scheme, sep, _ = url.partition("://")
    implementation = _IMPLEMENTATIONS.get(scheme.lower()) if sep else _NAMED.get(url.lower())
    if implementation is None and sep and scheme.lower().startswith("db+"):
        implementation = ("celeriac.backends.database", "DatabaseBackend")
    if implementation is None:
        available = ", ".join(f"{name}://" for name in _IMPLEMENTATIONS)
        raise ImproperlyConfigured(
            f"no result backend for {_masked(url)!r}: use a URL starting with one of {available}"
        )
    module_name, class_name = implementation
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"result backend {_masked(url)!r} needs the {exc.name or module_name!r} package, "
            "which is not installed: install it, or choose another result backend"
        ) from exc
    implementation_class: _BackendClass = getattr(module, class_name)
    return implementation_class


def _masked(url: str) -> str:
    """``url`` with every credential masked, fit for error messages and logs."""
    return mask_url(url)
