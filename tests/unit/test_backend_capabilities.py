"""What each result backend declares it can do (``BackendCapabilities``), pinned per backend,
and Celery's attribute names read from those flags. Whether each backend keeps its word is
held by tests/conformance/test_backend_conformance.py, which reads the same flags."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery, chord
from celeriac.backends import BackendCapabilities, ResultBackend, backend_class, create_backend
from celeriac.backends.base import ResultBackend as BaseResultBackend
from celeriac.exceptions import BackendCapabilityError, ImproperlyConfigured

# The table the docs print (docs/guides/result-backends.md): scheme -> what it declares.
TABLE: dict[str, BackendCapabilities] = {
    "memory://": BackendCapabilities(
        stores_results=True,
        notifies=True,
        expiry=True,
        expires_on_its_own=False,
        groups=True,
        counters=True,
        chords=True,
        celery_chord_keys=False,
        revocation_log=True,
    ),
    "sqlite:///x.sqlite": BackendCapabilities(
        stores_results=True,
        notifies=False,
        expiry=True,
        expires_on_its_own=False,
        groups=True,
        counters=True,
        chords=True,
        celery_chord_keys=False,
        revocation_log=True,
    ),
    "redis://localhost/9": BackendCapabilities(
        stores_results=True,
        notifies=True,
        expiry=True,
        expires_on_its_own=True,
        groups=True,
        counters=True,
        chords=True,
        celery_chord_keys=True,
        revocation_log=True,
    ),
    "db+sqlite:///x.sqlite": BackendCapabilities(
        stores_results=True,
        notifies=False,
        expiry=True,
        expires_on_its_own=False,
        groups=True,
        counters=True,
        chords=True,
        celery_chord_keys=False,
        revocation_log=False,
    ),
    "rpc://": BackendCapabilities(
        stores_results=False,
        notifies=True,
        expiry=False,
        expires_on_its_own=True,
        groups=False,
        counters=False,
        chords=False,
        celery_chord_keys=False,
        revocation_log=False,
    ),
    "django-db": BackendCapabilities(
        stores_results=True,
        notifies=False,
        expiry=True,
        expires_on_its_own=False,
        groups=True,
        counters=True,
        chords=True,
        celery_chord_keys=False,
        revocation_log=False,
    ),
    "django-cache": BackendCapabilities(
        stores_results=True,
        notifies=False,
        expiry=True,
        expires_on_its_own=True,
        groups=True,
        counters=True,
        chords=True,
        celery_chord_keys=False,
        revocation_log=False,
    ),
}


@pytest.fixture
def built(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultBackend]:
    """A backend of the URL, built without reaching any service (none connects until used)."""
    url: str = request.param
    if url.startswith(("sqlite", "db+sqlite")):
        url = url.replace("x.sqlite", str(tmp_path / "x.sqlite"))
    options = {"broker_url": "amqp://guest:guest@127.0.0.1:5672//"}
    backend = create_backend(url, options=options)
    yield backend
    backend.close()


@pytest.mark.parametrize("url", list(TABLE))
def test_each_backend_declares_its_capabilities_on_its_class(url: str) -> None:
    assert backend_class(url).capabilities == TABLE[url]


def test_every_backend_the_factory_knows_is_in_the_table() -> None:
    from celeriac.backends import _IMPLEMENTATIONS, _NAMED

    declared = {backend_class(url) for url in TABLE}
    for module, name in [*_IMPLEMENTATIONS.values(), *_NAMED.values()]:
        assert any(cls.__module__ == module and cls.__name__ == name for cls in declared), name


def test_capabilities_are_frozen_and_default_to_what_the_interface_promises() -> None:
    capabilities = BackendCapabilities()
    with pytest.raises(dataclasses.FrozenInstanceError):
        capabilities.chords = False  # type: ignore[misc]
    assert BaseResultBackend.capabilities == capabilities
    promised = {"stores_results", "expiry", "groups", "counters", "chords"}
    assert {f.name for f in dataclasses.fields(capabilities) if getattr(capabilities, f.name)} == (
        promised
    )


@pytest.mark.parametrize("built", list(TABLE), indirect=True)
def test_celerys_attribute_names_read_the_flags(built: ResultBackend) -> None:
    capabilities = built.capabilities
    assert built.supports_native_join is True  # fetch_many, everywhere
    assert built.supports_autoexpire is capabilities.expires_on_its_own
    assert built.implements_incr is capabilities.counters
    assert built.notifies is capabilities.notifies
    assert built.sends_results is not capabilities.stores_results
    assert built.logs_revocations is capabilities.revocation_log
    with pytest.raises(AttributeError):
        built.supports_autoexpire = True  # type: ignore[misc]
    if capabilities.chords:
        assert built.ensure_chords_allowed() is None
    else:
        with pytest.raises(NotImplementedError, match=r"BackendCapabilities\.chords is False"):
            built.ensure_chords_allowed()


@pytest.mark.parametrize("built", ["rpc://"], indirect=True)
def test_rpc_names_the_capability_and_the_remedy_for_what_it_cannot_do(
    built: ResultBackend,
) -> None:
    calls = [
        ("groups", lambda: built.save_group("g", b"[]", ttl=None)),
        ("groups", lambda: built.fetch_group("g")),
        ("groups", lambda: built.forget_group("g")),
        ("counters", lambda: built.incr("chord-unlock-g", ttl=None)),
        ("revocation_log", lambda: built.log_revoked(["t"], ttl=None)),
        ("revocation_log", lambda: built.revoked_since(None)),
        ("chords", built.chord_join),
    ]
    for flag, call in calls:
        with pytest.raises(BackendCapabilityError) as raised:
            call()
        assert raised.value.capability == flag
        message = str(raised.value)
        assert f"BackendCapabilities.{flag} is False" in message
        assert "RpcBackend cannot" in message
        assert "sqlite:///" in message or "instead" in message  # what to do instead


def test_the_capability_error_is_celerys_not_implemented_error_and_pickles() -> None:
    error = BackendCapabilityError("RpcBackend cannot count k", "counters")
    assert isinstance(error, NotImplementedError)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.capability) == (
        BackendCapabilityError,
        str(error),
        "counters",
    )


def test_chords_are_refused_from_the_flag_before_the_backend_is_built() -> None:
    app = Celery("caps", broker="memory://caps-refusal", backend="rpc://", set_as_current=False)
    try:

        @app.task
        def one() -> int:
            return 1

        with pytest.raises(ImproperlyConfigured, match="cannot run with the rpc:// result backend"):
            chord([one.s()])(one.s())
    finally:
        app.close()


def test_backend_class_rejects_an_unknown_scheme() -> None:
    with pytest.raises(ImproperlyConfigured, match="no result backend"):
        backend_class("nosuch://")
