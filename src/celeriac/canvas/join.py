"""The chord join: where a chord's header members meet, so that its body is sent once.

The seam is ``ChordJoin`` (``celeriac.backends.chord``, re-exported here), three calls at
the storage level (bytes in, bytes out, nothing of the canvas), so a result backend provides
its own without importing this package: ``ResultBackend.chord_join()`` returns it (None:
``CounterJoin``), and the backend's ``capabilities`` say whether chords can run on it at all
(``chords``) and whether its join keeps Celery's own keys (``celery_chord_keys``). Every
backend that ships with Celeriac has its own join: ``memory://`` and SQLite keep each
chord's reports in one atomic step (a lock, one SQL transaction), Redis in Celery 5.7's
``.s``/``.j``/``.d``/``.c`` keys (one Lua script). Any other backend gets ``CounterJoin``,
built on ``ResultBackend.incr`` and ``fetch_many`` alone, as does a chord that a backend's
join has no record of (its ``member_done`` raises ``LookupError``): one whose client saved
only the header's GroupResult, as a Celery client does on a store without a native join, or
an older Celeriac client did (``join_member``).

What every join promises (``ChordJoin.member_done``): each member counts once, however often
it reports (known by its task id; on Redis, as in Celery, by task id and ``group_index``);
the report that completes the header claims the body and gets every entry, in header order;
every other report gets None; and until ``finish`` records that the body went out, a later
report of *the member that claimed* gets the entries again. That last rule covers a worker
killed after its member's report claimed the body and before the body was sent: the member
is ``acks_late``, so the broker delivers it again, it runs again, reports again, and this
time its worker sends the body. The body's task id is fixed when the chord is applied, so a
worker killed after the send and before ``finish`` makes the redelivered member send the
body a second time *with the same id*: the one duplicate left, in a window of one
result-store round trip (and the same happens if the broker hands the claiming member out
again while its first run still lives, which leases kept alive by a live worker prevent).
A member that is not ``acks_late`` is not delivered again, so a crash between the claim and
the send loses its chord's body. Workers of an older Celeriac join with ``CounterJoin``
only: let the chords in flight finish before mixing them with these in one fleet.

``CounterJoin`` keeps, per chord (``gid`` = the header's group id)::

    group meta  <gid>               the header's GroupResult, saved by the client
                                    (``prepare_chord``; Celery's layout, so
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
one atomic backend call, so the body goes out once even when reports race. With counters
alone a claim cannot say whose it is, so ``CounterJoin`` cannot keep the last promise above:
there, a worker killed between its claim and the body's send leaves the body unsent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.app.settings import as_seconds
from celeriac.backends import backend_class
from celeriac.backends.chord import ChordJoin, ChordPart, ExtensibleChordJoin
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.result_meta import decode_exception, encode_exception
from celeriac.protocol.serializers import content_type_of, dumps, loads

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.app.results import ResultStore

__all__ = [
    "ChordJoin",
    "ChordPart",
    "CounterJoin",
    "add_chord_member",
    "chord_join_for",
    "chord_ttl",
    "decode_entry",
    "encode_entry",
    "ensure_chords_allowed",
    "join_member",
    "leaf_ids",
    "prepare_chord",
    "shaped_values",
]

logger = logging.getLogger("celeriac.canvas")


class CounterJoin:
    """The join on any ``ResultBackend``: counters and one read (see the module docstring)."""

    def __init__(self, results: ResultStore) -> None:
        self._results = results

    def prepare(self, group_id: str, member_ids: Sequence[str], *, ttl: float | None) -> None:
        """Nothing beyond the header's GroupResult, which ``prepare_chord`` saves."""

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        results = self._results
        saved = results.restore_group(part.group_id)
        if saved is None:
            logger.warning(
                "Chord %s: no saved header here, so %s does not join it (a Celery client "
                "joins it with celery.chord_unlock, or its meta expired)",
                part.group_id,
                part.task_id,
            )
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

    def add_member(self, group_id: str, task_id: str, *, ttl: float | None) -> None:
        """One more member: appended to the saved header (a read and a write, so two
        members adding at the same moment may lose one: the joins of the shipped
        backends have their own atomic ``add_member``)."""
        results = self._results
        saved = results.restore_group(group_id)
        if saved is None:
            raise LookupError(f"chord {group_id}: no saved header to add {task_id} to")
        head, members = saved
        results.save_group(group_id, [head, [*members, [[task_id, None], None]]], ttl=ttl)


def add_chord_member(app: AppLike, group_id: str, task_id: str) -> None:
    """``Task.add_to_chord``: the chord of ``group_id`` waits for ``task_id`` too, before its
    body runs (through the join's own ``add_member`` when it has one, else the counters')."""
    results, ttl = app.results, chord_ttl(app)
    join = chord_join_for(results)
    added = False
    if isinstance(join, ExtensibleChordJoin) and not isinstance(join, CounterJoin):
        try:
            join.add_member(group_id, task_id, ttl=ttl)
            added = True
        except LookupError:  # joined by counters: see join_member
            pass
    if not results.backend.capabilities.celery_chord_keys:  # the header prepare_chord saved
        try:
            CounterJoin(results).add_member(group_id, task_id, ttl=ttl)
        except LookupError:
            if not added:
                raise


def join_member(
    results: ResultStore, join: ChordJoin, part: ChordPart, *, ttl: float | None
) -> list[bytes] | None:
    """``join.member_done(part)``; for a chord ``join`` has no record of (``LookupError``),
    ``CounterJoin``'s, which joins it from the header's saved GroupResult, if any."""
    try:
        return join.member_done(part, ttl=ttl)
    except LookupError:
        logger.debug("Chord %s: not recorded in %r; joined by counters", part.group_id, join)
        return CounterJoin(results).member_done(part, ttl=ttl)


def chord_join_for(results: ResultStore) -> ChordJoin:
    """The join for a result store's backend: the backend's own, else ``CounterJoin``.

    Raises ``BackendCapabilityError`` when the backend cannot join chords."""
    backend = results.backend
    join = backend.chord_join()
    if join is None:
        return CounterJoin(results)
    if isinstance(join, ChordJoin):
        return join
    raise TypeError(f"{type(backend).__name__}.chord_join() returned {join!r}, not a ChordJoin")


_REMEDY = (
    "Set result_backend to a backend that stores results (sqlite:///..., redis://...). A "
    "group followed by a task (group | task, also inside a chain) is a chord too."
)


def ensure_chords_allowed(app: AppLike) -> None:
    """Raise ``ImproperlyConfigured`` when ``app``'s result backend cannot join a chord
    (``capabilities.chords`` False: ``rpc://``); read from the class its URL names, so
    before anything is built, sent or connected."""
    url = app.result_backend_url
    if url is None:
        return
    capabilities = backend_class(url).capabilities
    if capabilities.chords:
        return
    scheme, sep, _ = url.partition("://")
    why = "it lacks the 'chords' capability"
    if not capabilities.stores_results:
        why = "it sends each result as a message to the client that sent the task, stores nothing"
    raise ImproperlyConfigured(
        f"A chord cannot run with the {scheme.lower() + sep if sep else url} result backend: "
        f"{why}, so the chord's header members can never meet. {_REMEDY}"
    )


def prepare_chord(
    app: AppLike, group_id: str, member_ids: Sequence[str], header: Any = None
) -> None:
    """Record a chord's header (client side): its GroupResult, saved as Celery saves it for
    result stores without a native join, except where the join keeps Celery's native keys
    (``capabilities.celery_chord_keys``: Celery saves nothing there); then the join's own
    state. A ``header`` result tuple with a group among its members (a chain ending in a
    group) is saved as it is, on every store, as Celery does, so the body's values keep its
    shape (``shaped_values``)."""
    results, ttl = app.results, chord_ttl(app)
    try:
        join = chord_join_for(results)
        if header is not None and _is_nested(header):
            results.save_group(group_id, header, ttl=ttl)
        elif not results.backend.capabilities.celery_chord_keys:
            tuples = [[[member_id, None], None] for member_id in member_ids]
            results.save_group(group_id, [[group_id, None], tuples], ttl=ttl)
        join.prepare(group_id, member_ids, ttl=ttl)
    except NotImplementedError as exc:  # BackendCapabilityError: no chords, or no groups
        raise ImproperlyConfigured(
            f"A chord cannot run with this result backend ({exc}) {_REMEDY}"
        ) from exc


def chord_ttl(app: AppLike) -> float | None:
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


def _is_nested(result_tuple: Any) -> bool:
    """Whether a group's result tuple has a group among its members."""
    if not isinstance(result_tuple, (list, tuple)) or len(result_tuple) != 2:
        return False
    children = result_tuple[1]
    return isinstance(children, (list, tuple)) and any(
        isinstance(child, (list, tuple)) and len(child) == 2 and isinstance(child[1], (list, tuple))
        for child in children
    )


def shaped_values(app: AppLike, group_id: str, parts: Sequence[tuple[str, Any]]) -> list[Any]:
    """The body's argument: the members' values in header order, and where the saved header
    has a group as a member (``prepare_chord``), that group's values as one list, as Celery
    gives them. ``parts`` are ``(task_id, value)`` in the join's order."""
    flat = [value for _, value in parts]
    try:
        saved = app.results.restore_group(group_id)
    except NotImplementedError:
        return flat
    if saved is None or not _is_nested(saved):
        return flat
    by_id = dict(parts)

    def build(node: Any) -> Any:
        head, children = node
        if isinstance(children, (list, tuple)):
            return [build(child) for child in children]
        return by_id.pop(head[0])

    try:
        shaped = [build(child) for child in saved[1]]
    except (KeyError, TypeError, ValueError, IndexError):
        return flat  # not the header these reports came from: keep the join's order
    return shaped + [value for task_id, value in parts if task_id in by_id]


def encode_entry(app: AppLike, task_id: str, state: str, result: Any) -> bytes:
    """A member's ``ChordPart.entry``: its result as its meta stores it (exceptions encoded)."""
    serializer = app.results.serializer
    if isinstance(result, BaseException):
        result = encode_exception(result, serializer=serializer)
    return dumps([1, task_id, state, result], serializer)[0]


def decode_entry(app: AppLike, entry: bytes) -> tuple[str, str, Any]:
    """``(task_id, state, value)`` of an entry; the value is the exception for failures."""
    serializer = app.results.serializer
    content_type = content_type_of(serializer)
    encoding = "binary" if serializer in ("msgpack", "pickle") else "utf-8"
    results = app.results
    _, task_id, state, result = loads(
        entry, content_type, encoding, accept=results.accept, accept_setting=results.ACCEPT_SETTING
    )
    if state in states.EXCEPTION_STATES and isinstance(result, dict) and "exc_type" in result:
        result = decode_exception(result)
    return str(task_id), str(state), result
