"""The worker's persistent state (``-S/--statedb PATH``, Celery's ``worker_state_db``).

A worker keeps its revoked ids and its Lamport clock in one JSON file, so a restarted worker
still refuses what was revoked while it ran (a ``revoke`` broadcast reaches only the workers
running when it is sent)::

    {"format": "celeriac-statedb", "version": 1, "clock": 42,
     "revoked": [["<task id>", 1718000000.5], ...]}        # oldest first, wall-clock stamps

The worker loads it at start, before it mingles or consumes (so the file, the neighbours and
new broadcasts all merge), saves it every ``SAVE_INTERVAL`` seconds and at shutdown. Each
save writes a temporary file beside it and ``os.replace``-s it over the old one, so a crash
leaves the previous or the new file, never half of one. Celery's file is a ``shelve``, which
this is not: a file at ``PATH`` that is not ours (a Celery shelve, garbage) is moved aside to
``PATH.unreadable`` with a warning, and the worker starts fresh. Loaded ids keep their stamps,
so they expire when the ``RevokedSet`` would have forgotten them had the worker kept running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from typing import Any

from celeriac._lamport import LamportClock
from celeriac.worker.revoked import RevokedSet

__all__ = ["FORMAT", "SAVE_INTERVAL", "StateDB"]

logger = logging.getLogger("celeriac.worker")

FORMAT = "celeriac-statedb"
VERSION = 1
#: Seconds between saves while the worker runs.
SAVE_INTERVAL = 30.0


class StateDB:
    """The file at ``path`` holding ``revoked`` and ``clock`` across restarts."""

    def __init__(self, path: str, revoked: RevokedSet, clock: LamportClock) -> None:
        self.path = path
        self.revoked = revoked
        self.clock = clock

    def load(self) -> None:
        """Merge the saved state into ``revoked`` and ``clock``; no file is an empty state.

        A file that is not a state file is moved to ``path + '.unreadable'`` (warned);
        a file that cannot be read at all (permissions) is warned about and left alone.
        """
        try:
            with open(self.path, "rb") as file:
                raw = file.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning(
                "statedb: cannot read %s (%s); starting with no saved state", self.path, exc
            )
            return
        try:
            clock, entries = _parse(raw)
        except ValueError as exc:
            aside = self.path + ".unreadable"
            logger.warning(
                "statedb: %s is not a Celeriac state file (%s); moved it to %s and starting "
                "with no saved state",
                self.path,
                exc,
                aside,
            )
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            return
        self.clock.adjust(clock)
        self.revoked.restore(entries)
        logger.info(
            "statedb: loaded %d revoked ids and clock %d from %s",
            len(self.revoked),
            clock,
            self.path,
        )

    def save(self) -> None:
        """Write the current state atomically; failures are logged, never raised."""
        state = {
            "format": FORMAT,
            "version": VERSION,
            "clock": self.clock.value,
            "revoked": [[task_id, stamp] for task_id, stamp in self.revoked.items()],
        }
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=os.path.basename(self.path) + ".", suffix=".tmp", dir=folder
            )
        except OSError as exc:
            logger.warning("statedb: cannot save %s: %s", self.path, exc)
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(state, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("statedb: cannot save %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _parse(raw: bytes) -> tuple[int, list[tuple[str, float]]]:
    """The clock and the ``(id, stamp)`` pairs of a state file; ValueError if not one."""
    try:
        state: Any = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("no celeriac-statedb marker")
    if state.get("version") != VERSION:
        raise ValueError(f"unknown version {state.get('version')!r}")
    clock, revoked = state.get("clock"), state.get("revoked")
    if isinstance(clock, bool) or not isinstance(clock, int) or not isinstance(revoked, list):
        raise ValueError("malformed clock or revoked ids")
    entries: list[tuple[str, float]] = []
    for item in revoked:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or isinstance(item[1], bool)
            or not isinstance(item[1], (int, float))
        ):
            raise ValueError(f"malformed revoked entry {item!r}")
        entries.append((item[0], float(item[1])))
    return clock, entries
