"""What a finished task sends on: callbacks, the next chain step, its chord part, errbacks.

Signatures arrive as the wire dicts of the task's message (wire.md §1.6) and are
rebuilt with ``Signature.from_dict``, so a step that is a group, a chord or a chain runs as
it would have from the client. In Celery's order:

* success, before the result is stored: ``link`` callbacks get the result as first
  argument (more than one go out as a group), then the last item of the reversed
  ``embed.chain`` is sent with the rest of the list; after the result is stored, a chord
  member reports to the chord join (``canvas.join``), and the report that completes the
  header sends the body with the header's results in order;
* failure, after the failure is stored: a chord member reports too (the body then fails
  with ``ChordError`` naming the member), every remaining chain step is stored FAILURE
  (a chord member among them reports), then errbacks run: one registered here whose
  function takes more than one argument is called in the worker as
  ``errback(request, exc, traceback)``; others are sent with the failed task's id.

Everything here is called from the execution of one task; none of it raises (a problem is
logged, and a chord that cannot complete fails its body).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.app.producer import CALL_OPTIONS
from celeriac.canvas.chain import chain
from celeriac.canvas.chord import chord
from celeriac.canvas.group import group
from celeriac.canvas.join import (
    ChordPart,
    chord_join_for,
    chord_ttl,
    decode_entry,
    encode_entry,
    join_member,
    shaped_values,
)
from celeriac.canvas.signature import Signature, as_list, maybe_signature
from celeriac.exceptions import ChordError
from celeriac.request import Context

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = [
    "chord_error",
    "fail_chain",
    "report_chord_part",
    "run_errbacks",
    "send_callbacks",
    "send_next_step",
]

logger = logging.getLogger("celeriac.canvas")


def _known_options(sig: Signature[Any]) -> None:
    """Drop options this side does not know (a Celery client may add some), quietly."""
    for key in [key for key in sig.options if key not in CALL_OPTIONS]:
        logger.debug("Signature %s: option %r is not a calling option; dropped", sig.task, key)
        del sig.options[key]


def _rebuild(app: AppLike, d: Signature[Any] | Mapping[str, Any]) -> Signature[Any]:
    sig: Signature[Any] = maybe_signature(d, app=app)
    _known_options(sig)
    return sig


def send_callbacks(app: AppLike, request: Context, retval: Any) -> None:
    """Send the ``link`` callbacks of a successful task with its result."""
    ids: dict[str, Any] = {"parent_id": request.id, "root_id": request.root_id or request.id}
    callbacks = [_rebuild(app, d) for d in request.callbacks or ()]
    if len(callbacks) == 1:
        callbacks[0].apply_async((retval,), **ids)
        return
    plain = [sig for sig in callbacks if not isinstance(sig, group)]
    for sig in callbacks:
        if isinstance(sig, group):
            sig.apply_async((retval,), **ids)
    if plain:
        group(plain, app=app).apply_async((retval,), **ids)


def send_next_step(app: AppLike, request: Context, retval: Any) -> None:
    """Send the next step of the chain a successful task is part of, with its result."""
    if not request.chain:
        return
    *rest, nxt = request.chain
    step = _rebuild(app, nxt)
    step.apply_async(
        (retval,), chain=rest, parent_id=request.id, root_id=request.root_id or request.id
    )


def report_chord_part(app: AppLike, request: Context, state: str, result: Any) -> None:
    """Report a chord member's end (``result``: its value, or its exception) to the join;
    send or fail the body when this report completes the header."""
    group_id, body = request.group, request.chord
    if not group_id or not body or not request.id:
        return
    try:
        entry = encode_entry(app, request.id, state, result)
        part = ChordPart(group_id, request.group_index, request.id, state, entry)
        join = chord_join_for(app.results)
        entries = join_member(app.results, join, part, ttl=chord_ttl(app))
    except Exception as exc:
        logger.exception(
            "Chord %s: the report of %s[%s] failed", group_id, request.task, request.id
        )
        chord_error(app, body, ChordError(f"Join error: {exc!r}"))
        return
    if entries is None:
        return
    try:
        _complete(app, group_id, _rebuild(app, body), entries)
    finally:
        try:
            join.finish(group_id)
        except Exception:
            logger.exception("Chord %s: could not drop its join state", group_id)


def _complete(app: AppLike, group_id: str, body: Signature[Any], entries: Sequence[bytes]) -> None:
    try:
        parts = [decode_entry(app, entry) for entry in entries]
    except Exception as exc:
        chord_error(
            app, body, ChordError(f"Chord {group_id}: a header result does not decode: {exc!r}")
        )
        return
    for task_id, state, value in parts:
        if state in states.PROPAGATE_STATES:
            reason = f"Dependency {task_id} raised {value!r}"
            logger.error("Chord %s: %s", group_id, reason)
            error = ChordError(reason)
            error.__cause__ = value if isinstance(value, Exception) else None
            chord_error(app, body, error)
            return
    try:
        values = shaped_values(app, group_id, [(task_id, value) for task_id, _, value in parts])
        body.apply_async((values,))
    except Exception as exc:
        logger.exception("Chord %s: the body could not be sent", group_id)
        chord_error(app, body, ChordError(f"Callback error: {exc!r}"))


def chord_error(app: AppLike, body: Signature[Any] | Mapping[str, Any], exc: Exception) -> None:
    """A chord's body that will never run: stored FAILURE with ``exc``, its errbacks run,
    and what was chained after it failed too. The members of a group body get the failed
    header member's own exception (``exc.__cause__``), as in Celery."""
    try:
        sig = _rebuild(app, body)
        cause = exc.__cause__
        own = cause if isinstance(sig, group) and isinstance(cause, Exception) else exc
        _fail(app, sig, own, errbacks=True)
        fail_chain(app, sig.options.get("chain"), exc)
    except Exception:
        logger.exception("Chord body %r: could not record its failure", body)


def _fail(app: AppLike, sig: Signature[Any], exc: Exception, *, errbacks: bool) -> None:
    """Store FAILURE for every task ``sig`` would have run; a chord member among them
    reports to its chord; with ``errbacks``, their errbacks run."""
    if isinstance(sig, chord):
        if sig.body is not None:
            _fail(app, sig.body, exc, errbacks=errbacks)
        return
    if isinstance(sig, (chain, group)):
        # A group's own link_error would have replaced its members' when it ran: each member
        # runs both (once each), as Celery's chord error handling does.
        shared = as_list(sig.options.get("link_error")) if isinstance(sig, group) else []
        for task in sig.tasks:
            member = maybe_signature(task, app=app)
            if errbacks and not isinstance(member, (chain, group, chord)):
                for errback in shared:
                    member.append_to_list_option("link_error", errback)
            _fail(app, member, exc, errbacks=errbacks)
        if errbacks and isinstance(sig, chain):
            run_errbacks(app, _request_of(sig), exc, None)
        return
    request = _request_of(sig)
    if request.id is None:
        return
    if app.results.enabled:
        app.results.store(request.id, states.FAILURE, exc, request=request)
    report_chord_part(app, request, states.FAILURE, exc)
    if errbacks:
        run_errbacks(app, request, exc, None)


def _request_of(sig: Signature[Any]) -> Context:
    """The context a task of ``sig`` would have had, for its errbacks and its chord."""
    options = sig.options
    return Context(
        id=options.get("task_id"),
        task=sig.task,
        args=sig.args,
        kwargs=dict(sig.kwargs),
        group=options.get("group_id"),
        group_index=options.get("group_index"),
        chord=_wire(options.get("chord")),
        root_id=options.get("root_id"),
        parent_id=options.get("parent_id"),
        errbacks=[_wire(eb) for eb in as_list(options.get("link_error"))] or None,
        called_directly=False,
    )


def _wire(value: Any) -> Any:
    return value.to_dict() if isinstance(value, Signature) else value


def fail_chain(app: AppLike, steps: Sequence[Any] | None, exc: Exception) -> None:
    """Store FAILURE for the chain steps that will not run now (so waiting on the chain's
    result raises), in running order, so the last step's result is stored last; a chord
    member among them reports to its chord."""
    for step in reversed(steps or ()):  # the list is reversed: its last item runs next
        try:
            _fail(app, _rebuild(app, step), exc, errbacks=False)
        except Exception:
            logger.exception("Could not record the failure of chain step %r", step)


def run_errbacks(app: AppLike, request: Context, exc: BaseException, traceback: str | None) -> None:
    """Run the ``link_error`` errbacks of a failed task: new-style ones (registered here,
    taking more than one argument) in place; old-style ones sent with its id, as a group."""
    old_style: list[Signature[Any]] = []
    for d in request.errbacks or ():
        sig = _rebuild(app, d)
        if not _takes_request(app, sig):
            old_style.append(sig)
            continue
        try:
            sig(request, exc, traceback)
        except Exception:
            logger.exception("Errback %s raised", sig.task)
    if not old_style:
        return
    ids: dict[str, Any] = {"parent_id": request.id, "root_id": request.root_id or request.id}
    errbacks = group(old_style, app=app)
    if request.is_eager:
        errbacks.apply((request.id,), **ids)
    else:
        errbacks.apply_async((request.id,), **ids)


def _takes_request(app: AppLike, sig: Signature[Any]) -> bool:
    """Whether the errback's task is here and takes ``(request, exc, traceback)``."""
    if type(sig) is not Signature:
        return False
    task = app.tasks.get(sig.task)
    if task is None:
        return False
    try:
        parameters = task._call_signature().parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in parameters if p.kind in positional]
    if sig.immutable:
        return len(names) > 1
    # Count what the failure still supplies, as Celery does: a parameter the signature binds
    # by keyword (and every one after it) is no longer positional, nor are its stored args.
    bound = next((i for i, name in enumerate(names) if name in sig.kwargs), len(names))
    return bound - len(sig.args) > 1
