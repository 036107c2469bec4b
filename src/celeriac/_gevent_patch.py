"""gevent's monkey patching, done first when the command line asks for ``worker -P gevent``.

gevent must replace ``socket``, ``threading``, ``time.sleep`` and the rest before the worker
creates a socket, a lock or a thread, and before the task modules bind them. The pool named
in the settings (``worker_pool``) is known only once the app is imported, which is too late,
so, as Celery does, the entry points (``python -m celeriac`` and the ``celeriac`` console
script) look for ``-P gevent``, ``-Pgevent``, ``--pool gevent`` or ``--pool=gevent`` in a
``worker`` command line and patch before loading the app.

Celery honours no environment variable for this, and Celeriac adds none: with
``worker_pool = 'gevent'`` in the settings the command line still needs ``-P gevent``
(a gevent pool in an unpatched process refuses to start and says so). ``multi`` is left
alone: the workers it starts patch themselves.

This module imports nothing but gevent, and gevent only when asked.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["GEVENT_MISSING", "patch_if_requested", "requested_pool"]

GEVENT_MISSING = (
    "The gevent pool (-P gevent) needs gevent, which is not installed: "
    'pip install "celeriac[gevent]"'
)


def requested_pool(argv: Sequence[str]) -> str | None:
    """The pool ``-P``/``--pool`` names in a ``worker`` command line (not ``multi``), else None."""
    if "worker" not in argv or "multi" in argv:
        return None
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in ("-P", "--pool"):
            return argv[index + 1] if index + 1 < len(argv) else None
        if arg.startswith("--pool="):
            return arg.partition("=")[2]
        if arg.startswith("-P"):  # -Pgevent, as click reads it
            return arg[2:]
    return None


def patch_if_requested(argv: Sequence[str]) -> bool:
    """Monkey-patch with gevent when ``argv`` runs ``worker -P gevent``; True when patched.

    Exits with an error naming the extra to install when gevent is missing.
    """
    if requested_pool(argv) != "gevent":
        return False
    try:
        from gevent import monkey  # type: ignore[import-untyped]
    except ImportError:
        raise SystemExit(f"Error: {GEVENT_MISSING}") from None
    if not monkey.is_module_patched("socket"):  # the console script may call twice
        monkey.patch_all()
    return True
