"""What a finished task sends on, in the order the execution of one task needs it.

The execution calls ``send_callbacks`` after a success and before the result is stored
(so the stored ``children`` list what was sent), with publishing held back
(``celeriac.app.producer.hold_publishes``) until the success is stored, ``after_success``
once it is stored, and ``after_failure`` once a failure is stored. The workflow logic
itself (signatures rebuilt from the message's wire dicts, groups, chords, the chord join)
lives in ``celeriac.canvas.dispatch``; see there for the rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.canvas import dispatch
from celeriac.request import Context

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.execution import ExceptionInfo

__all__ = ["after_failure", "after_success", "send_callbacks", "send_errbacks"]


def send_callbacks(app: AppLike, request: Context, retval: Any) -> None:
    """Send the ``link`` callbacks and the next chain step of a successful task."""
    if request.callbacks:
        dispatch.send_callbacks(app, request, retval)
    dispatch.send_next_step(app, request, retval)


def after_success(app: AppLike, request: Context, retval: Any) -> None:
    """A chord member reports its result (stored by now) to its chord."""
    if request.chord:
        dispatch.report_chord_part(app, request, states.SUCCESS, retval)


def after_failure(app: AppLike, request: Context, exc: BaseException, einfo: ExceptionInfo) -> None:
    """A failure (stored by now): the chord member reports, the rest of the chain fails
    too, then the errbacks run."""
    if request.chord:
        dispatch.report_chord_part(app, request, states.FAILURE, exc)
    if request.chain and app.results.enabled and isinstance(exc, Exception):
        dispatch.fail_chain(app, request.chain, exc)
    send_errbacks(app, request, exc, einfo)


def send_errbacks(app: AppLike, request: Context, exc: BaseException, einfo: ExceptionInfo) -> None:
    """Run or send the ``link_error`` errbacks of a failed task."""
    if request.errbacks:
        dispatch.run_errbacks(app, request, exc, einfo.traceback)
