"""Node names, at Celery's import path ``celery.utils.nodenames``.

A node name is ``name@host``. ``anon_nodename()`` names this process when it is not a worker
(``gen<pid>@<host>``, as a task message's ``origin``); in-process test workers use it as
their default name, as Celery's ``start_worker`` does. ``default_nodename`` gives a worker's
default (``celeriac@<host>`` unless a name is given), ``nodesplit`` takes one apart, and
``host_format`` expands Celery's ``%h`` (node host), ``%n`` (short host), ``%d`` (domain)
and ``%i``/``%I`` (pool process index, empty here) in a name or path.
"""

from __future__ import annotations

import os
import socket

__all__ = [
    "NODENAME_DEFAULT",
    "NODENAME_SEP",
    "anon_nodename",
    "default_nodename",
    "gethostname",
    "host_format",
    "nodename",
    "nodesplit",
]

NODENAME_SEP = "@"
NODENAME_DEFAULT = "celeriac"


def gethostname() -> str:
    return socket.gethostname()


def nodename(name: str, hostname: str) -> str:
    """``name@hostname``."""
    return NODENAME_SEP.join((name, hostname))


def anon_nodename(hostname: str | None = None, prefix: str = "gen") -> str:
    """The node name of this process when it is no worker: ``gen<pid>@<host>``."""
    return nodename(f"{prefix}{os.getpid()}", hostname or gethostname())


def nodesplit(name: str) -> tuple[str | None, str]:
    """``(name, host)`` of ``name@host``; ``(None, name)`` when there is no ``@``."""
    head, sep, tail = name.partition(NODENAME_SEP)
    return (head, tail) if sep else (None, head)


def default_nodename(hostname: str | None, default_name: str = NODENAME_DEFAULT) -> str:
    """``hostname`` as a full node name: ``<default_name>@<host>`` when it has no name part."""
    name, host = nodesplit(hostname or "")
    return nodename(name or default_name, host or gethostname())


def host_format(template: str, hostname: str | None = None, **extra: str) -> str:
    """Expand ``%h``, ``%n``, ``%d`` (and ``%i``/``%I``, given in ``extra``) in ``template``."""
    host = hostname or gethostname()
    short, _, domain = host.partition(".")  # of the whole name, as Celery splits it
    values = {"h": host, "n": short, "d": domain, "i": extra.get("i", ""), "I": extra.get("I", "")}
    out, index = [], 0
    while index < len(template):
        char = template[index]
        following = template[index + 1 : index + 2]
        if char == "%" and (following in values or following == "%"):
            out.append("%" if following == "%" else values[following])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)
