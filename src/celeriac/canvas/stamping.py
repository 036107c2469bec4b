"""Stamping: custom headers set on every signature of a canvas, carried to the workers.

``sig.stamp(visitor=None, append_stamps=False, **headers)`` sets ``headers`` (and what
``visitor.on_signature`` returns) as options of ``sig``, names them in its
``stamped_headers`` option, and does the same to its callbacks (plus ``on_callback``'s) and
errbacks (plus ``on_errback``'s). A group, chain or chord stamps each of its members, adding
what its ``on_group_start`` / ``on_chain_start`` / ``on_chord_header_start`` returns to the
headers handed down (a chord's body gets ``on_chord_body``'s too). A stamp set again is
replaced, or with ``append_stamps`` kept in a list after the new value(s). On the wire the
stamps travel as Celery's ``stamped_headers`` and ``stamps`` headers; a worker shows them as
``self.request.stamps``, and ``control.revoke_by_stamped_headers`` revokes by them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeriac.canvas.chain import chain
    from celeriac.canvas.chord import chord
    from celeriac.canvas.group import group
    from celeriac.canvas.signature import Signature

__all__ = ["StampingVisitor", "stamp_links", "stamp_members", "stamp_one", "stamps_of"]


class StampingVisitor:
    """Says which stamps each part of a canvas gets; subclass it and define ``on_signature``.

    Each ``on_*`` method returns a dict of stamps (a ``stamped_headers`` key in it, if any,
    names which of its keys are stamps); the ``*_end`` methods return nothing.
    """

    def on_signature(self, sig: Signature[Any], **headers: Any) -> dict[str, Any]:
        raise NotImplementedError("a StampingVisitor defines on_signature()")

    def on_group_start(self, group: group, **headers: Any) -> dict[str, Any]:
        return {}

    def on_group_end(self, group: group, **headers: Any) -> None:
        return None

    def on_chain_start(self, chain: chain, **headers: Any) -> dict[str, Any]:
        return {}

    def on_chain_end(self, chain: chain, **headers: Any) -> None:
        return None

    def on_chord_header_start(self, chord: chord, **headers: Any) -> dict[str, Any]:
        return self.on_group_start(chord.header, **headers)

    def on_chord_header_end(self, chord: chord, **headers: Any) -> None:
        self.on_group_end(chord.header, **headers)

    def on_chord_body(self, chord: chord, **headers: Any) -> dict[str, Any]:
        return {}

    def on_callback(self, callback: Signature[Any], **headers: Any) -> dict[str, Any]:
        return {}

    def on_errback(self, errback: Signature[Any], **headers: Any) -> dict[str, Any]:
        return {}


def _stamps(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stamps in ``headers``: those its ``stamped_headers`` names, else all of them."""
    if not headers:
        return {}
    names = headers.get("stamped_headers")
    if names is None:
        return dict(headers)
    return {name: headers.get(name) for name in names}


def _as_values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def stamp_one(sig: Signature[Any], stamps: Mapping[str, Any], append: bool) -> None:
    """Set ``stamps`` on ``sig`` itself (replaced, or with ``append`` added before the old)."""
    options = sig.options
    names = list(options.get("stamped_headers") or ())
    for name, value in stamps.items():
        if append and name in names and name in options:
            options[name] = [*_as_values(value), *_as_values(options[name])]
        else:
            options[name] = value
        if name not in names:
            names.append(name)
    options["stamped_headers"] = names


def stamps_of(options: Mapping[str, Any]) -> dict[str, Any]:
    """The stamps in calling ``options``: the values of the names ``stamped_headers`` lists."""
    return {name: options[name] for name in options.get("stamped_headers") or () if name in options}


#: Turns a callback or errback as stored (a signature or its wire dict) into a signature;
#: ``Signature`` hands in ``maybe_signature``, so this module need not import it.
AsSignature = Callable[[Any], Any]


def stamp_signature(
    sig: Signature[Any],
    visitor: StampingVisitor | None,
    append: bool,
    headers: dict[str, Any],
    as_signature: AsSignature,
) -> None:
    """``Signature.stamp`` for one task's signature and its callbacks and errbacks."""

    stamps = _stamps(headers)
    if visitor is not None:
        stamps.update(_stamps(visitor.on_signature(sig, **headers)))
    stamp_one(sig, stamps, append)
    stamp_links(sig, visitor, append, headers, as_signature)


def stamp_links(
    sig: Signature[Any],
    visitor: StampingVisitor | None,
    append: bool,
    headers: dict[str, Any],
    as_signature: AsSignature,
) -> None:
    """Stamp ``sig``'s callbacks (``on_callback``) and errbacks (``on_errback``) only."""
    hooks = (("link", "on_callback"), ("link_error", "on_errback"))
    for option, hook in hooks:
        for index, linked in enumerate(_as_values(sig.options.get(option) or [])):
            linked = as_signature(linked)
            extra = _stamps(getattr(visitor, hook)(linked, **headers)) if visitor else {}
            link_stamps = _stamps(headers)
            if visitor is not None:
                link_stamps.update(_stamps(visitor.on_signature(linked, **headers)))
            stamp_one(linked, {**link_stamps, **extra}, append)
            _replace_item(sig.options, option, index, linked)


def _replace_item(options: dict[str, Any], key: str, index: int, value: Any) -> None:
    current = options[key]
    if isinstance(current, list):
        current[index] = value
    else:
        options[key] = value


def stamp_members(
    members: list[Signature[Any]],
    visitor: StampingVisitor | None,
    append: bool,
    headers: dict[str, Any],
    started: dict[str, Any] | None,
) -> dict[str, Any]:
    """Stamp each member with ``headers`` plus what the composite's start hook returned
    (``started``); the headers handed down."""
    down = {**_stamps(headers), **_stamps(started)}
    for member in members:
        member.stamp(visitor, append, **down)
    return down
