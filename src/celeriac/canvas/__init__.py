"""Workflows (Celery's canvas): signatures and the primitives that combine them.

``Signature`` is one task call to apply later (``add.s(2, 2)``); ``chain`` runs signatures
one after the other, ``group`` in parallel, ``chord`` runs a group then a body with all of
its results; ``chunks``, ``xmap`` and ``xstarmap`` run one task over many arguments in few
messages. They travel as Celery's signature dicts (wire.md §1.5-1.6), so Celery
clients and workers read them and the other way round.

Modules: ``signature`` (the class and its wire form), ``group``, ``chord``, ``chain``,
``maps`` (chunks, xmap, xstarmap), ``compose`` (the ``|`` rules), ``join`` (where a chord's
header meets: the seam result backends may fill), ``dispatch`` (what a finished task sends
on), ``replace`` (``Task.replace``), ``builtins`` (the ``celery.*`` tasks every app has),
``stamping`` (``sig.stamp``, ``StampingVisitor``).
"""

from __future__ import annotations

from celeriac.canvas import compose as compose  # registers what ``a | b`` builds
from celeriac.canvas.chain import chain
from celeriac.canvas.chord import chord
from celeriac.canvas.group import group
from celeriac.canvas.maps import chunks, xmap, xstarmap
from celeriac.canvas.signature import Signature, maybe_signature, signature
from celeriac.canvas.stamping import StampingVisitor

#: Celery's name for the chain class itself (``chain(...)`` there may reduce to another
#: primitive; here ``chain`` is the class already). Code written for Celery imports it.
_chain = chain

#: Celery's old name for ``signature``.
subtask = signature

__all__ = [
    "Signature",
    "StampingVisitor",
    "chain",
    "chord",
    "chunks",
    "group",
    "maybe_signature",
    "signature",
    "subtask",
    "xmap",
    "xstarmap",
]
