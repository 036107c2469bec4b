"""The worker options that act before the worker is made: ``--uid``/``--gid``/``--umask``
and ``--pool-start-method``; and the environment the worker reads, read here at the edge
(``CELERIAC_AUTOSCALE_KEEPALIVE``) and passed down in ``WorkerOptions``.

Privileges are dropped as Celery's ``maybe_drop_privileges`` does it: the group first (and the
user's supplementary groups), then the user, so the process cannot get root back; a name or a
number is accepted for each.
"""

from __future__ import annotations

import grp
import os
import pwd

import click

from celeriac.app.base import Celery

__all__ = ["apply_pool_start_method", "autoscale_keepalive", "drop_privileges", "parse_umask"]

POOL_START_METHODS = ("fork", "spawn")


def autoscale_keepalive() -> float:
    """``CELERIAC_AUTOSCALE_KEEPALIVE``: seconds extra autoscaled children may stay idle
    (Celery's ``AUTOSCALE_KEEPALIVE``), 30 by default."""
    value = os.environ.get("CELERIAC_AUTOSCALE_KEEPALIVE", "30")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise click.UsageError(
            f"CELERIAC_AUTOSCALE_KEEPALIVE={value!r} is not valid; expected seconds >= 0"
        )
    return seconds


def apply_pool_start_method(app: Celery, method: str | None, pool: str | None) -> None:
    """``--pool-start-method`` / ``worker_pool_start_method``: Celeriac's prefork pool forks.

    ``fork`` is Celery's default and what the pool does; ``spawn`` (a fresh interpreter per
    child) is refused with the alternatives rather than accepted and ignored.
    """
    chosen = method or app.conf.worker_pool_start_method or "fork"
    if chosen not in POOL_START_METHODS:
        raise click.BadParameter(
            f"{chosen!r} is not a start method; use one of {', '.join(POOL_START_METHODS)}",
            param_hint="--pool-start-method",
        )
    if chosen == "spawn" and (pool or app.conf.worker_pool or "prefork") == "prefork":
        raise click.UsageError(
            "--pool-start-method spawn (worker_pool_start_method) is not supported: "
            "Celeriac's prefork pool forks its children. Use fork (the default), or "
            "-P threads / -P asyncio for code that must not be forked."
        )


def parse_umask(value: str | None) -> int | None:
    """``--umask 022`` (or ``0o22``): always octal, as Celery reads it."""
    if value is None or value.strip() == "":
        return None
    try:
        umask = int(value.strip().lower().removeprefix("0o"), 8)
    except ValueError:
        umask = -1
    if not 0 <= umask <= 0o777:
        raise click.BadParameter(
            f"{value!r} is not a umask; give an octal number such as 022", param_hint="--umask"
        )
    return umask


def _uid(value: str) -> tuple[int, str | None]:
    if value.isdigit():
        uid = int(value)
        try:
            return uid, pwd.getpwuid(uid).pw_name
        except KeyError:
            return uid, None
    try:
        return pwd.getpwnam(value).pw_uid, value
    except KeyError:
        raise click.BadParameter(f"no user named {value!r}", param_hint="--uid") from None


def _gid(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise click.BadParameter(f"no group named {value!r}", param_hint="--gid") from None


def drop_privileges(uid: str | None, gid: str | None) -> None:
    """Become ``gid`` then ``uid`` (names or numbers). Refuses, naming why, when the
    process may not change to them (only root may)."""
    if not uid and not gid:
        return
    user = _uid(uid) if uid else None
    group = _gid(gid) if gid else (pwd.getpwuid(user[0]).pw_gid if user else None)
    try:
        if group is not None:
            if user is not None and user[1] is not None and os.geteuid() == 0:
                os.initgroups(user[1], group)
            os.setgid(group)
        if user is not None:
            os.setuid(user[0])
    except PermissionError as exc:
        raise click.UsageError(
            f"Cannot drop privileges to uid={uid} gid={gid}: {exc.strerror}; only root can "
            "change user or group (start the worker as root, or leave --uid/--gid out)."
        ) from exc
    if user is not None and user[0] != 0 and _can_regain_root():
        raise click.UsageError("Dropping privileges failed: the process could become root again")


def _can_regain_root() -> bool:
    try:
        os.setuid(0)
    except PermissionError:
        return False
    return True
