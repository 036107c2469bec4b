"""The in-process result backend: dictionaries behind one lock, for tests and eager mode.

Backends made from the same URL share one named store in the process (``memory://`` names
the default store ``""``, ``memory://name`` another one; ``cache+memory://`` is an alias),
so an app and its in-thread worker see the same results. Nothing leaves the process and
nothing survives it.

Layout of one named store::

    results:  task_id  -> _Entry(payload, state, expires_at)
    groups:   group_id -> _Entry(payload, "", expires_at)
    counters: key      -> (value, expires_at)
    revoked:  [(sequence, task_id, expires_at)]   the revocation log, oldest first
    chords:   group_id -> _Chord(members, entries, waiting, claimer, sent, expires_at), the
              state of ``MemoryChordJoin``: the header's task ids in order, the first entry
              each reported, the ids yet to report, the id whose report claimed the body,
              and whether the body went out (then only that is kept, until it expires)

``expires_at`` is Unix time from the backend's clock (None: never). Every step is atomic
because it runs under the store's ``threading.Condition``; ``store`` and ``forget`` bump a
version and notify it, which is what wakes ``wait_for`` (so ``notifies`` is True); its
deadline is read from the clock, but the wait itself is a real ``Condition.wait``. Expired
entries read as absent and stay until ``cleanup`` deletes them, as in the SQLite backend.
``chord_join()`` hands out ``MemoryChordJoin``, the rules of ``celeriac.canvas.join`` kept
under the same lock: each report is one atomic step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celeriac._time import Clock, system_clock
from celeriac.backends.base import BackendCapabilities, BaseKeyValueStoreBackend
from celeriac.backends.chord import ChordPart
from celeriac.exceptions import ImproperlyConfigured, TimeoutError

__all__ = ["MemoryBackend", "MemoryChordJoin", "reset_store"]

_SCHEMES = ("memory", "cache+memory")


@dataclass(frozen=True, slots=True)
class _Entry:
    payload: bytes
    state: str
    expires_at: float | None


@dataclass(eq=False)
class _Chord:
    """One chord's join state (``MemoryChordJoin``)."""

    members: list[str]
    expires_at: float | None
    entries: dict[str, bytes] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)
    claimer: str | None = None
    sent: bool = False


@dataclass(eq=False)
class _MemoryStore:
    """The shared state behind every ``MemoryBackend`` of one name."""

    results: dict[str, _Entry] = field(default_factory=dict)
    groups: dict[str, _Entry] = field(default_factory=dict)
    counters: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    revoked: list[tuple[int, str, float | None]] = field(default_factory=list)
    revoked_seq: int = 0
    chords: dict[str, _Chord] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)
    version: int = 0

    def clear(self) -> None:
        with self.changed:
            self.results.clear()
            self.groups.clear()
            self.counters.clear()
            self.revoked.clear()
            self.chords.clear()
            self.version += 1
            self.changed.notify_all()


_registry: dict[str, _MemoryStore] = {}
_registry_lock = threading.Lock()


def _named_store(name: str) -> _MemoryStore:
    with _registry_lock:
        return _registry.setdefault(name, _MemoryStore())


def reset_store(name: str = "") -> None:
    """Empty the named store and drop it from the registry (for tests)."""
    with _registry_lock:
        store = _registry.pop(name, None)
    if store is not None:
        store.clear()


def _store_name(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ImproperlyConfigured(
            f"{url!r} is not a memory result backend URL: use memory:// or memory://<name>"
        )
    return rest.partition("?")[0].strip("/")


def _expired(expires_at: float | None, now: float) -> bool:
    return expires_at is not None and expires_at <= now


class MemoryBackend(BaseKeyValueStoreBackend):
    """Results kept in this process, shared by every backend made from the same URL."""

    capabilities = BackendCapabilities(notifies=True, revocation_log=True)

    def __init__(
        self,
        url: str = "memory://",
        *,
        options: Mapping[str, Any] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        del options  # nothing to tune; unknown keys are ignored
        self.name = _store_name(url)
        self._store = _named_store(self.name)
        self._clock = clock

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock.time() + ttl

    def store(
        self,
        task_id: str,
        payload: bytes,
        *,
        state: str,
        ttl: float | None,
        reply_to: str | None = None,  # ignored: results are kept here, not sent
    ) -> None:
        entry = _Entry(bytes(payload), state, self._expiry(ttl))
        with self._store.changed:
            self._store.results[task_id] = entry
            self._store.version += 1
            self._store.changed.notify_all()

    def fetch(self, task_id: str) -> bytes | None:
        return self.fetch_many([task_id]).get(task_id)

    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        with self._store.changed:
            return self._live_results(task_ids)

    def _live_results(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        now = self._clock.time()
        found: dict[str, bytes] = {}
        for task_id in task_ids:
            entry = self._store.results.get(task_id)
            if entry is not None and not _expired(entry.expires_at, now):
                found[task_id] = entry.payload
        return found

    def wait_for(
        self,
        task_ids: Sequence[str],
        is_ready: Callable[[bytes], bool],
        *,
        timeout: float | None,
        interval: float = 0.5,
    ) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(task_ids))
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        changed = self._store.changed
        while True:
            with changed:
                version = self._store.version
                found = self._live_results(wanted)
            # is_ready is the caller's code (it decodes meta), so it runs outside the lock.
            ready = {task_id: payload for task_id, payload in found.items() if is_ready(payload)}
            if len(ready) == len(wanted):
                return {task_id: ready[task_id] for task_id in wanted}
            with changed:
                while self._store.version == version:
                    if deadline is None:
                        changed.wait()
                        continue
                    remaining = deadline - self._clock.monotonic()
                    if remaining <= 0 or not changed.wait(remaining):
                        raise TimeoutError(
                            f"{len(wanted) - len(ready)} of {len(wanted)} results were not "
                            f"ready within {timeout} s"
                        )

    def forget(self, task_id: str) -> None:
        with self._store.changed:
            if self._store.results.pop(task_id, None) is not None:
                self._store.version += 1
                self._store.changed.notify_all()

    def save_group(self, group_id: str, payload: bytes, *, ttl: float | None) -> None:
        entry = _Entry(bytes(payload), "", self._expiry(ttl))
        with self._store.changed:
            self._store.groups[group_id] = entry

    def fetch_group(self, group_id: str) -> bytes | None:
        with self._store.changed:
            entry = self._store.groups.get(group_id)
        if entry is None or _expired(entry.expires_at, self._clock.time()):
            return None
        return entry.payload

    def forget_group(self, group_id: str) -> None:
        with self._store.changed:
            self._store.groups.pop(group_id, None)

    def incr(self, key: str, *, ttl: float | None) -> int:
        now = self._clock.time()
        with self._store.changed:
            value, expires_at = self._store.counters.get(key, (0, None))
            if _expired(expires_at, now):
                value = 0
            value += 1
            self._store.counters[key] = (value, self._expiry(ttl))
            return value

    def log_revoked(self, task_ids: Sequence[str], *, ttl: float | None) -> None:
        expires_at = self._expiry(ttl)
        with self._store.changed:
            for task_id in task_ids:
                self._store.revoked_seq += 1
                self._store.revoked.append((self._store.revoked_seq, task_id, expires_at))

    def revoked_since(self, cursor: str | None) -> tuple[list[str], str]:
        after = int(cursor) if cursor else 0
        now = self._clock.time()
        with self._store.changed:
            log = self._store.revoked
            ids = [tid for seq, tid, expires in log if seq > after and not _expired(expires, now)]
            return ids, str(max(after, log[-1][0] if log else 0))

    def cleanup(self) -> int:
        now = self._clock.time()
        with self._store.changed:
            log = self._store.revoked
            live = [entry for entry in log if not _expired(entry[2], now)]
            removed = len(log) - len(live)
            log[:] = live
            for table in (self._store.results, self._store.groups):
                stale = [key for key, entry in table.items() if _expired(entry.expires_at, now)]
                for key in stale:
                    del table[key]
                removed += len(stale)
            counters = self._store.counters
            stale = [key for key, (_, expires_at) in counters.items() if _expired(expires_at, now)]
            for key in stale:
                del counters[key]
            removed += len(stale)
            chords = self._store.chords
            stale = [gid for gid, chord in chords.items() if _expired(chord.expires_at, now)]
            for gid in stale:
                del chords[gid]
            return removed + len(stale)

    def chord_join(self) -> MemoryChordJoin:
        """The chord join on this store (``MemoryChordJoin``)."""
        return MemoryChordJoin(self._store, self._clock)

    def close(self) -> None:
        """Nothing to release: the named store outlives its backends (see ``reset_store``)."""


class MemoryChordJoin:
    """``celeriac.backends.chord.ChordJoin`` on a memory store: every call one step under its lock.

    ``prepare`` records the header's task ids (replacing what an earlier run of the same
    frozen chord left); ``member_done`` raises ``LookupError`` for a chord not recorded here
    (or expired), gives nothing once the body went out, keeps the first entry of each member,
    and once no member is waiting, claims the body for the first report to see that, or
    hands the claim back to that same member reporting again (its redelivery); ``finish``
    marks the body sent and drops the rest.
    """

    def __init__(self, store: _MemoryStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock.time() + ttl

    def prepare(self, group_id: str, member_ids: Sequence[str], *, ttl: float | None) -> None:
        chord = _Chord(list(member_ids), self._expiry(ttl), waiting=set(member_ids))
        with self._store.changed:
            self._store.chords[group_id] = chord

    def add_member(self, group_id: str, task_id: str, *, ttl: float | None) -> None:
        """``Task.add_to_chord``: one more member to wait for, its result last."""
        with self._store.changed:
            chord = self._store.chords.get(group_id)
            if chord is None or chord.sent:
                raise LookupError(f"chord {group_id} is not waiting in this store")
            chord.members.append(task_id)
            chord.waiting.add(task_id)
            chord.expires_at = self._expiry(ttl)

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        task_id = part.task_id
        with self._store.changed:
            chord = self._store.chords.get(part.group_id)
            if chord is None or _expired(chord.expires_at, self._clock.time()):
                raise LookupError(f"chord {part.group_id} is not recorded in this store")
            if chord.sent:
                return None
            if task_id in chord.waiting:
                chord.waiting.discard(task_id)
                chord.entries[task_id] = bytes(part.entry)
            chord.expires_at = self._expiry(ttl)
            if chord.waiting or chord.claimer not in (None, task_id):
                return None
            chord.claimer = task_id
            return [chord.entries[member] for member in chord.members]

    def finish(self, group_id: str) -> None:
        with self._store.changed:
            chord = self._store.chords.get(group_id)
            if chord is not None:
                chord.sent, chord.claimer = True, None
                chord.members, chord.entries = [], {}
