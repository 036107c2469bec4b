"""The chord join: where a chord's header members meet, so that its body is sent once.

The seam is ``ChordJoin``, three calls at the storage level (bytes in, bytes out, nothing of
the canvas), so a result backend can provide its own without importing this package: a
backend with a ``chord_join()`` method returning a ``ChordJoin`` is used through it (the
Redis backend does, to keep Celery's ``.s``/``.j``/``.t`` keys); any other backend gets
``CounterJoin``, built on ``ResultBackend.incr`` and ``fetch_many`` alone.

``CounterJoin`` keeps, per chord (``gid`` = the header's group id)::

    group meta  <gid>               the header's GroupResult, saved by the client before
                                    it sends the header (Celery's layout, so
                                    GroupResult.restore(gid) works): its members' ids in
                                    header order, and so the header's size
    counter     chord-unlock-<gid>  completions reported so far (Celery's KV backends'
                                    name); a redelivered member reports again
    counter     chord-claim-<gid>   1 for the report that sends the body, more for others

A member reports after its own result is stored: (1) ``n = incr(chord-unlock-<gid>)``;
(2) ``n`` below the size: done; (3) read every member's result in one ``fetch_many``; one
not ready: done (a duplicate report pushed ``n`` up early; that member reports again when
it ends); (4) ``incr(chord-claim-<gid>) != 1``: done, another report got here first;
(5) hand back the members' results in header order: the caller sends the body. Each step is
one atomic backend call, so the body goes out once even when reports race: the last report
to increment sees every result stored (each member stores before it increments), and the
claim lets only one of the reports that see that through. A member killed before it reports
is delivered again (``acks_late``) and reports then. What is not covered: a worker killed
between its claim and the body's publish (one broker round trip) leaves the body unsent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from celeriac import states
from celeriac.app.settings import as_seconds
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.result_meta import decode_exception, encode_exception
from celeriac.protocol.serializers import content_type_of, dumps, loads

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.app.results import ResultStore

__all__ = [
    "ChordJoin",
    "ChordPart",
    "CounterJoin",
    "chord_join_for",
    "chord_ttl",
    "decode_entry",
    "encode_entry",
    "ensure_chords_allowed",
    "leaf_ids",
    "prepare_chord",
]

logger = logging.getLogger("celeriac.canvas")


@dataclass(frozen=True, slots=True)
class ChordPart:
    """One header member's end, as a join records it."""

    group_id: str
    group_index: int | None  # the member's place in the header (None: unknown, sorts last)
    task_id: str
    state: str
    #: ``[1, task_id, state, result]`` in the result serializer, ``result`` stored as in the
    #: member's meta (an exception encoded): Celery's entry in ``celery-taskset-meta-<gid>.j``.
    entry: bytes


@runtime_checkable
class ChordJoin(Protocol):
    """Where the members of a chord's header meet. Every method may raise ``BackendError``."""

    def prepare(self, group_id: str, member_ids: Sequence[str], *, ttl: float | None) -> None:
        """Client side, before the header is sent: the chord of ``group_id`` has these
        members (header order, which is also the ``group_index`` order)."""

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        """Worker side, after ``part``'s member stored its result.

        Returns every member's entry (``ChordPart.entry`` form) in header order to exactly
        one report: the one that completes the header and claims the body's sending; None
        to every other (and when the chord is unknown here). A member reported twice (a
        redelivery) counts once.
        """

    def finish(self, group_id: str) -> None:
        """After the body was sent (or failed): drop what only the join needed."""


class CounterJoin:
    """The join on any ``ResultBackend``: counters and one read (see the module docstring)."""

    def __init__(self, results: ResultStore) -> None:
        self._results = results

    def prepare(self, group_id: str, member_ids: Sequence[str], *, ttl: float | None) -> None:
        tuples = [[[member_id, None], None] for member_id in member_ids]
        self._results.save_group(group_id, [[group_id, None], tuples], ttl=ttl)

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        results = self._results
        saved = results.restore_group(part.group_id)
        if saved is None:
            logger.warning(
                "Chord %s: no saved header here, so %s does not join it (a Celery client "
                "joins it with celery.chord_unlock, or its meta expired)",
                part.group_id, part.task_id,
            )  # fmt: skip
            return None
        member_ids = leaf_ids(saved)
        backend = results.backend
        if backend.incr(f"chord-unlock-{part.group_id}", ttl=ttl) < len(member_ids):
            return None
        found = backend.fetch_many(member_ids)
        metas = [results.decode(found[tid]) for tid in member_ids if tid in found]
        if len(metas) < len(member_ids):
            return None
        if any(meta.get("status") not in states.READY_STATES for meta in metas):
            return None
        if backend.incr(f"chord-claim-{part.group_id}", ttl=ttl) != 1:
            return None
        serializer = results.serializer
        return [
            dumps([1, tid, meta["status"], meta.get("result")], serializer)[0]
            for tid, meta in zip(member_ids, metas, strict=True)
        ]

    def finish(self, group_id: str) -> None:
        """Nothing to drop: the counters expire, and the claim must outlive late reports."""


def chord_join_for(results: ResultStore) -> ChordJoin:
    """The join for a result store's backend: the backend's own, else ``CounterJoin``."""
    backend = results.backend
    provide = getattr(backend, "chord_join", None)
    if callable(provide):
        join = provide()
        if isinstance(join, ChordJoin):
            return join
        raise TypeError(f"{type(backend).__name__}.chord_join() returned {join!r}, not a ChordJoin")
    return CounterJoin(results)


_REMEDY = (
    "Set result_backend to a backend that stores results (sqlite:///..., redis://...). A "
    "group followed by a task (group | task, also inside a chain) is a chord too."
)


def ensure_chords_allowed(app: Celery) -> None:
    """Raise ``ImproperlyConfigured`` when ``app``'s result backend cannot join a chord
    (``rpc://``); checked from the URL alone, so before anything is sent or connected."""
    url = app.result_backend_url
    if url is not None and url.partition("://")[0].lower() == "rpc":
        raise ImproperlyConfigured(
            "A chord cannot run with the rpc:// result backend: it sends each result as a "
            "message to the client that sent the task and stores nothing, so the chord's "
            f"header members can never meet. {_REMEDY}"
        )


def prepare_chord(app: Celery, group_id: str, member_ids: Sequence[str]) -> None:
    """Record a chord's header in the join of ``app``'s result backend (client side)."""
    try:
        chord_join_for(app.results).prepare(group_id, member_ids, ttl=chord_ttl(app))
    except NotImplementedError as exc:  # a backend that keeps no groups
        raise ImproperlyConfigured(
            f"A chord cannot run with this result backend, which keeps no groups ({exc}). {_REMEDY}"
        ) from exc


def chord_ttl(app: Celery) -> float | None:
    """How long a chord's join state lives: ``result_chord_expires``, else ``result_expires``."""
    conf = app.conf
    return as_seconds(conf.result_chord_expires) or as_seconds(conf.result_expires) or None


def leaf_ids(result_tuple: Any) -> list[str]:
    """The task ids in a result tuple (``[[id, parent], children]``), nested groups flattened."""
    if not isinstance(result_tuple, (list, tuple)) or len(result_tuple) != 2:
        return []
    head, children = result_tuple
    if isinstance(children, (list, tuple)):
        return [tid for child in children for tid in leaf_ids(child)]
    if isinstance(head, (list, tuple)) and head and isinstance(head[0], str):
        return [head[0]]
    return []


def encode_entry(app: Celery, task_id: str, state: str, result: Any) -> bytes:
    """A member's ``ChordPart.entry``: its result as its meta stores it (exceptions encoded)."""
    serializer = app.results.serializer
    if isinstance(result, BaseException):
        result = encode_exception(result, serializer=serializer)
    return dumps([1, task_id, state, result], serializer)[0]


def decode_entry(app: Celery, entry: bytes) -> tuple[str, str, Any]:
    """``(task_id, state, value)`` of an entry; the value is the exception for failures."""
    serializer = app.results.serializer
    content_type = content_type_of(serializer)
    encoding = "binary" if serializer in ("msgpack", "pickle") else "utf-8"
    _, task_id, state, result = loads(entry, content_type, encoding, accept=[content_type])
    if state in states.EXCEPTION_STATES and isinstance(result, dict) and "exc_type" in result:
        result = decode_exception(result)
    return str(task_id), str(state), result
