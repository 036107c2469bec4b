"""The chord join's seam: ``ChordJoin`` and the ``ChordPart`` it is told about.

A result backend that keeps chords natively implements ``ChordJoin`` here, below the canvas,
so it never imports ``celeriac.canvas``; ``celeriac.canvas.join`` says what every join
promises and holds ``CounterJoin``, the join on any backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["ChordJoin", "ChordPart"]


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
        members, in header order (the order of the body's list of results). Starts the
        chord afresh, so a frozen chord applied again joins again (``CounterJoin``'s
        counters cannot be reset: there it does not)."""

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        """Worker side, after ``part``'s member stored its result.

        Returns every member's entry (``ChordPart.entry`` form) in header order to the report
        that completes the header and claims the body's sending, and again to any later
        report of that same member until ``finish``: its redelivery, after its worker died
        before the body went out. Returns None to every
        other report (and once the chord finished). A member reported twice (a
        redelivery) counts once. ``ttl`` refreshes the join state's expiry.

        May raise ``LookupError`` when the join holds no record of the chord (never
        prepared through it, or expired): ``join_member`` then joins it with
        ``CounterJoin``. A join that raises it must keep a finished chord's record (as
        finished) as long as the chord's ``ttl``, so a late report is not joined twice.
        """

    def finish(self, group_id: str) -> None:
        """After the body was sent (or failed): record that, so no later report sends it
        again, and drop what only the join needed."""
