"""Celeriac: a distributed task queue with Celery's API and wire protocol.

``from celeriac import Celery`` and go on as with Celery; with no broker configured the app
uses an embedded SQLite file, so nothing else needs to run.
"""

from __future__ import annotations

import uuid as _uuid
from typing import Any

from celeriac import states
from celeriac._proxy import Proxy
from celeriac._version import __version__
from celeriac.app.base import Celery, shared_task
from celeriac.app.base import current_app as _current_app
from celeriac.canvas import (
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    subtask,
    xmap,
    xstarmap,
)
from celeriac.request import current_task as _current_task
from celeriac.result import AsyncResult, EagerResult
from celeriac.routing import Exchange, Queue
from celeriac.task import Task

VERSION_BANNER = f"celeriac {__version__}"

#: Celery's name for the app class; Celeriac is the same class.
Celeriac = Celery


def uuid() -> str:
    """A new random task id (a UUID4 as text), as ``celery.uuid()`` gives."""
    return str(_uuid.uuid4())


current_app: Any = Proxy(_current_app)
current_task: Any = Proxy(_current_task)

__all__ = [
    "AsyncResult",
    "Celeriac",
    "Celery",
    "EagerResult",
    "Exchange",
    "Queue",
    "Signature",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "current_task",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
    "xmap",
    "xstarmap",
]
