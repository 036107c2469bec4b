"""Signs of life for long CLI operations: a spinner, or a bar for a task's PROGRESS meta.

Drawn on stderr, and only when stderr is a terminal, so stdout stays what scripts read and
nothing at all is drawn when output is piped. ``CELERIAC_PROGRESS=1`` forces it on (a
terminal that does not say so, or a test), ``CELERIAC_PROGRESS=0`` off.

``Activity`` is a context manager: a daemon thread redraws one line every ``_TICK`` seconds
(frame, label, optional ``[####....] 3/10 30%`` bar, elapsed seconds) and erases it on exit.
``clear()`` erases it now, before other output is written (it is redrawn at the next tick).
``wait_for_result`` waits for a task showing its ``PROGRESS`` meta (``current``/``total``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from celeriac import states
from celeriac.exceptions import TimeoutError as ResultTimeout

if TYPE_CHECKING:
    from celeriac.result import AsyncResult

__all__ = ["Activity", "enabled", "wait_for_result"]

_TICK = 0.1
_FRAMES_UTF8 = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_FRAMES_ASCII = "|/-\\"
_BAR = 24
_POLL = 0.2  # seconds between reads of a task's state while waiting


def enabled(stream: TextIO | None = None) -> bool:
    """Whether to draw on ``stream`` (stderr): a terminal, unless CELERIAC_PROGRESS says."""
    forced = os.environ.get("CELERIAC_PROGRESS", "").strip().lower()
    if forced in ("1", "true", "yes", "always"):
        return True
    if forced in ("0", "false", "no", "never"):
        return False
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def bar(current: float, total: float) -> str:
    """``[#########...............]  3/8  37%``."""
    share = 0.0 if total <= 0 else min(max(current / total, 0.0), 1.0)
    filled = round(share * _BAR)
    return f"[{'#' * filled}{'.' * (_BAR - filled)}] {_count(current)}/{_count(total)} {share:4.0%}"


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


class Activity:
    """A one-line spinner (and bar) on stderr for the length of a ``with`` block."""

    def __init__(self, label: str, *, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.active = enabled(self.stream)
        self.label = label
        self.progress: tuple[float, float] | None = None
        encoding = (getattr(self.stream, "encoding", None) or "").lower()
        self._frames = _FRAMES_UTF8 if "utf" in encoding else _FRAMES_ASCII
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Activity:
        if self.active:
            self._thread = threading.Thread(target=self._run, name="CLIProgress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        self.clear()

    def update(self, label: str | None = None, progress: tuple[float, float] | None = None) -> None:
        with self._lock:
            if label is not None:
                self.label = label
            self.progress = progress

    def clear(self) -> None:
        """Erase the line now (call before writing anything else to the terminal)."""
        if self.active:
            with self._lock:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()

    def _run(self) -> None:
        frame = 0
        while not self._stop.wait(_TICK):
            with self._lock:
                elapsed = time.monotonic() - self._started
                parts = [self._frames[frame % len(self._frames)], self.label]
                if self.progress is not None:
                    parts.append(bar(*self.progress))
                parts.append(f"{elapsed:.0f}s")
                self.stream.write("\r\x1b[2K" + " ".join(parts))
                self.stream.flush()
            frame += 1


def _progress_of(meta: dict[str, Any]) -> tuple[float, float] | None:
    info = meta.get("result")
    if meta.get("status") != "PROGRESS" or not isinstance(info, dict):
        return None
    current, total = info.get("current"), info.get("total")
    if isinstance(current, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return float(current), float(total)
    return None


def wait_for_result(result: AsyncResult[Any], timeout: float | None) -> None:
    """Wait until ``result`` is ready (``TimeoutError`` after ``timeout``), showing its
    state, and a bar while it reports PROGRESS with ``current``/``total``, on a terminal."""
    with Activity(f"{result.id} PENDING") as activity:
        if not activity.active:
            result.get(timeout=timeout, propagate=False)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        store = result.app.results
        while True:
            meta = store.get_meta(result.id)
            if result._remember(meta) in states.READY_STATES:
                break
            activity.update(f"{result.id} {meta.get('status')}", _progress_of(meta))
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ResultTimeout(f"The task was not ready within {timeout} s")
            time.sleep(_POLL if left is None else min(_POLL, left))
    result.get(timeout=timeout, propagate=False)
