"""``chord``: a group (the header) whose results, in order, are the argument of a body.

On the wire a chord is ``{"task": "celery.chord", "kwargs": {"header": <group>, "body":
<sig>, "kwargs": {}}, "subtask_type": "chord", ...}``. Applying it freezes the body (its
task id is the chord's result id, its ``group_id`` the header's), records the header in the
chord join (``canvas.join``: the header's group meta for the default join, the ``.s`` size
key on Redis), then sends every header member with headers ``group``/``group_index`` and
the body in ``embed.chord``. The member that completes the header sends the body with the
list of results; if a member failed, the body is stored FAILURE with a ``ChordError``
naming it and the body's errbacks run (``canvas.dispatch``). A header that is a chain, a
chord or a group counts by what ends it: a chain's last step, a chord's body, each member;
a member whose result is a group (a chain ending in a group, a chord with a group body)
gives the body that group's values as one list, as in Celery (``join.shaped_values``).
A result backend that stores nothing (``rpc://``) cannot join a chord: applying one there
raises ``ImproperlyConfigured`` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas._lazy_header import send_lazily
from celeriac.canvas.group import group
from celeriac.canvas.join import ensure_chords_allowed, leaf_ids, prepare_chord
from celeriac.canvas.signature import Signature, as_list, maybe_signature, new_id
from celeriac.canvas.stamping import StampingVisitor, stamp_members

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.result import GroupResult

__all__ = ["chord"]

# Options that place the chord's body in what follows it (an outer chain, chord or group).
_BODY_ONLY = ("chain", "chord", "group_id", "group_index")
# Options about sending the header, now, from here: the body is sent later, by a worker.
_HEADER_ONLY = ("parent_id", "add_to_parent")


def _as_group(header: Any, app: AppLike | None) -> group:
    if isinstance(header, group):
        return header
    if isinstance(header, Mapping):
        sig = maybe_signature(header, app=app)
        return sig if isinstance(sig, group) else group([sig], app=app)
    if isinstance(header, Signature):
        return group([header], app=app)
    return group(list(header) if isinstance(header, Iterable) else [header], app=app)


@Signature.register_type("chord")
class chord(Signature[Any]):
    """``chord([add.s(i, i) for i in range(10)], tsum.s())`` or ``chord(header)(body)``."""

    def __init__(
        self,
        header: Any,
        body: Signature[Any] | Mapping[str, Any] | None = None,
        task: str = "celery.chord",
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        app: AppLike | None = None,
        **options: Any,
    ) -> None:
        # A generator is read as the chord is sent (see _lazy_header), or when read first.
        self._unread: Iterator[Any] | None = header if isinstance(header, Iterator) else None
        fields = {
            **dict(kwargs or {"kwargs": {}}),
            "header": group([], app=app) if self._unread is not None else _as_group(header, app),
            "body": maybe_signature(body, app=app),
        }
        super().__init__(task, args, fields, options, subtask_type="chord", app=app)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: AppLike | None = None) -> chord:
        fields = dict(d["kwargs"])
        header, body = fields.pop("header", ()), fields.pop("body", None)
        sig = cls(
            header,
            body,
            task=d.get("task") or "celery.chord",
            args=d.get("args"),
            kwargs=fields,
            app=app,
            **dict(d.get("options") or {}),
        )
        sig.immutable = bool(d.get("immutable", False))
        return sig

    @property
    def header(self) -> group:
        header: group = self.kwargs["header"]
        if self._unread is not None:  # a generator header, read now in full
            unread, self._unread = self._unread, None
            header.tasks = [maybe_signature(task, app=self._app) for task in unread]
        return header

    @property
    def tasks(self) -> list[Signature[Any]]:
        return self.header.tasks

    @property
    def body(self) -> Signature[Any] | None:
        body: Signature[Any] | None = self.kwargs.get("body")
        return body

    @body.setter
    def body(self, value: Signature[Any] | None) -> None:
        self.kwargs["body"] = value

    @property
    def app(self) -> AppLike:
        if self._app is None:
            header: group = self.kwargs["header"]  # not self.header: that reads a generator
            if header.tasks:
                return header.app
            if self.body is not None:
                return self.body.app
        return super().app

    def __len__(self) -> int:
        return len(self.header.tasks)

    def __call__(self, body: Signature[Any] | None = None, **options: Any) -> Any:
        """``chord(header)(body)``: apply with ``body``."""
        return self.apply_async((), {"body": body} if body is not None else {}, **options)

    def set_immutable(self, immutable: bool) -> None:
        self.header.set_immutable(immutable)

    def stamp(
        self, visitor: StampingVisitor | None = None, append_stamps: bool = False, **headers: Any
    ) -> chord:
        """Stamp the header's members (``on_chord_header_start``'s stamps added) and the
        body (those and ``on_chord_body``'s); see ``canvas.stamping``."""
        started = visitor.on_chord_header_start(self, **headers) if visitor else None
        down = stamp_members(self.header.tasks, visitor, append_stamps, headers, started)
        if visitor is not None:
            visitor.on_chord_header_end(self, **headers)
        if self.body is not None:
            body_stamps = visitor.on_chord_body(self, **down) if visitor else None
            stamp_members([self.body], visitor, append_stamps, down, body_stamps)
        return self

    def link(self, callback: Signature[Any] | Mapping[str, Any]) -> Any:
        """Callbacks go on the body: they get the chord's result."""
        if self.body is None:
            raise ValueError("link(): this chord has no body yet")
        return self.body.link(callback)

    def link_error(self, errback: Signature[Any] | Mapping[str, Any]) -> Any:
        """Errbacks go on the body (run when a member fails too); with the setting
        ``task_allow_error_cb_on_chord_header`` on every header member as well."""
        if self.body is None:
            raise ValueError("link_error(): this chord has no body yet")
        if self.app.conf.task_allow_error_cb_on_chord_header:
            for task in self.header.tasks:
                task.link_error(maybe_signature(errback, app=self._app).clone().set(immutable=True))
        return self.body.link_error(errback)

    # -- freezing and sending ---------------------------------------------------------------

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature[Any] | Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> Any:
        """Fix the header's and the body's ids now; the body's future result, whose parent
        is the header's ``GroupResult``. ``group_id``/``chord``/``group_index`` go to the
        body (this chord is a member of that group or chord)."""
        header_result = self.header.freeze(root_id=root_id, parent_id=parent_id)
        self.options["task_id"] = header_result.id
        if self.body is None:
            return header_result
        body_result = self.body.freeze(
            _id, group_id=group_id, chord=chord, root_id=root_id, group_index=group_index
        )
        _attach(body_result, header_result)
        return body_result

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> Any:
        """Send the header; the body's ``AsyncResult`` (``task_id`` is the body's id).

        ``args``/``kwargs`` go to every header member; ``countdown``/``eta`` delay the
        header; ``link``/``link_error`` go on the body, as do options that place the chord
        in a chain, group or chord; other options go to both.
        """
        body = (kwargs or {}).get("body") or self.body
        if body is None:
            raise ValueError("a chord needs a body: chord(header, body) or chord(header)(body)")
        body = maybe_signature(body, app=self._app)
        header_kwargs = {**self.kwargs.get("kwargs", {}), **(kwargs or {})}
        header_kwargs.pop("body", None)
        options = self._merged_options(options)
        frozen_id = options.pop("task_id", None)  # from freeze(); the id given here wins
        task_id = task_id or frozen_id
        if self.app.conf.task_always_eager:
            return self.apply(args, header_kwargs, body=body, **options)
        unread, self._unread = self._unread, None
        return self.run(
            self.header.clone() if unread is None else group([], app=self._app),
            body.clone(),
            self._partial_args(args),
            header_kwargs,
            task_id=task_id,
            unread=unread,
            **options,
        )

    def run(
        self,
        header: group,
        body: Signature[Any],
        partial_args: Sequence[Any],
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        unread: Iterator[Any] | None = None,
        **options: Any,
    ) -> Any:
        """Freeze, record the header in the chord join, send the header (see apply_async);
        a header still to be read from a generator (``unread``) is sent as it is read."""
        app = self.app
        ensure_chords_allowed(app)
        group_id = header.options.get("task_id") or new_id()
        header.options["task_id"] = group_id
        root_id = body.options.get("root_id") or options.get("root_id")
        for callback in as_list(options.pop("link", None)):
            body.link(callback)
        for errback in as_list(options.pop("link_error", None)):
            if isinstance(body, group):
                _link_error_to_group_body(body, maybe_signature(errback, app=self._app))
            else:
                body.link_error(errback)
        delay: dict[str, Any] = {k: options.pop(k) for k in ("countdown", "eta") if k in options}
        body_only = {key: options.pop(key) for key in _BODY_ONLY if key in options}
        options.pop("task_id", None)
        body.options.update(
            {k: v for k, v in {**options, **body_only}.items() if k not in _HEADER_ONLY}
        )
        body_result = body.freeze(task_id or new_id(), group_id=group_id, root_id=root_id)
        if unread is not None:
            sending: dict[str, Any] = {**options, **delay}
            sent = send_lazily(app, unread, group_id, body, root_id, partial_args, kwargs, sending)
            _attach(body_result, sent)
            return body_result
        header_result: GroupResult = header.freeze(group_id=group_id, chord=body, root_id=root_id)
        if header.tasks:
            members = leaf_ids(header_result.as_tuple())
            prepare_chord(app, group_id, members, header_result.as_tuple())
            header_result = header.apply_async(
                partial_args, kwargs, task_id=group_id, **options, **delay
            )
        else:  # nothing will ever complete the header: the body runs now, with no results
            body.apply_async(([],))
        _attach(body_result, header_result)
        return body_result

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        propagate: bool = True,
        body: Signature[Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run the header here, then the body with its results; the body's eager result."""
        body = body or self.body
        if body is None:
            raise ValueError("a chord needs a body: chord(header, body) or chord(header)(body)")
        header_result = self.header.clone().apply(self._partial_args(args), kwargs)
        values = header_result.get(propagate=propagate, disable_sync_subtasks=False)
        result = maybe_signature(body, app=self._app).apply((values,))
        _attach(result, header_result)
        return result

    def __repr__(self) -> str:
        return f"chord({self.header.tasks!r}, {self.body!r})"


def _link_error_to_group_body(
    body: Signature[Any], errback: Signature[Any], top: bool = True
) -> None:
    """The chord's ``link_error`` on its group body, as Celery 5.7 places it: a group that
    runs as one and has a ``link_error`` of its own (which replaces its members' when it
    runs) gets it there, beside its own; otherwise every member gets a copy, and a chord
    among them on its body only (its header is no part of this chord's body)."""
    if isinstance(body, group):
        if top and body.options.get("link_error") is not None:
            body.append_to_list_option("link_error", errback.clone())
        else:
            for task in body.tasks:
                _link_error_to_group_body(task, errback, top=False)
    elif isinstance(body, chord) and body.body is not None:
        body.body = maybe_signature(body.body, app=body._app)
        _link_error_to_group_body(body.body, errback)
    else:
        body.link_error(errback.clone())


def _attach(result: Any, header_result: GroupResult) -> None:
    """Make the header's result the parent of the first result of ``result``'s line."""
    node = result
    seen: set[str] = set()
    while node is not None and node is not header_result:
        if node.id in seen:
            raise RuntimeError(f"result {node.id} is its own ancestor")
        seen.add(node.id)
        if node.parent is None:
            node.parent = header_result
            return
        node = node.parent
