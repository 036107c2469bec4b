"""The auth serializer: Celery's signed-body layout both ways, and every refusal."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.exceptions import ContentDisallowed, DecodeError, ImproperlyConfigured, SecurityError
from celeriac.protocol import serializers
from celeriac.protocol.serializers import dumps, loads
from celeriac.protocol.signing import Certificate, CertStore, Signer
from tests.support import pki_support

TASK_BODY = [[2, 3], {"z": "é"}, {"callbacks": None, "errbacks": None, "chain": None}]


@pytest.fixture(name="pki", scope="module")
def pki_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pki")
    store = root / "store"
    store.mkdir()
    alice = pki_support.self_signed(root, "alice", password=b"s3cret")
    mallory = pki_support.self_signed(root, "mallory")
    (store / "alice.pem").write_bytes(alice.cert.read_bytes())
    return {"alice": alice, "mallory": mallory, "store": store}


def _signer(issued: pki_support.Issued, store: Path, password: bytes | None = None) -> Signer:
    return Signer(
        key=issued.key.read_bytes(),
        key_password=password,
        certificate=Certificate(issued.cert.read_bytes()),
        store=CertStore.from_path(str(store)),
    )


@pytest.fixture(name="installed")
def installed_fixture(pki: dict[str, Any]) -> Iterator[Signer]:
    signer = _signer(pki["alice"], pki["store"], b"s3cret")
    serializers.use_signer(signer)
    try:
        yield signer
    finally:
        serializers.use_signer(None)


def _celery_serializer(issued: pki_support.Issued, store: Path, password: str | None) -> Any:
    from celery.security.certificate import Certificate as CeleryCert
    from celery.security.certificate import FSCertStore
    from celery.security.key import PrivateKey
    from celery.security.serialization import SecureSerializer

    return SecureSerializer(
        PrivateKey(issued.key.read_text(), password=password),
        CeleryCert(issued.cert.read_text()),
        FSCertStore(str(store)),
        "sha256",
    )


def test_celery_opens_what_celeriac_signs(installed: Signer, pki: dict[str, Any]) -> None:
    body, content_type, encoding = dumps(TASK_BODY, "auth")
    assert (content_type, encoding) == ("application/data", "utf-8")
    theirs = _celery_serializer(pki["alice"], pki["store"], "s3cret")
    assert theirs.deserialize(body.decode()) == TASK_BODY


def test_celeriac_opens_what_celery_signs(installed: Signer, pki: dict[str, Any]) -> None:
    theirs = _celery_serializer(pki["alice"], pki["store"], "s3cret")
    sealed = theirs.serialize(TASK_BODY)
    assert loads(sealed.encode(), "application/data", "utf-8", accept=["auth"]) == TASK_BODY


def _fields(sealed: bytes) -> list[bytes]:
    return base64.b64decode(sealed).split(b"\x00\x01", 4)


def _pack(fields: list[bytes]) -> bytes:
    return base64.b64encode(b"\x00\x01".join(fields))


def _refusal(body: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        loads(body, "application/data", "utf-8", accept=["auth"])
    assert isinstance(info.value.__cause__, SecurityError)
    return str(info.value)


def test_tampered_body_is_refused(installed: Signer) -> None:
    fields = _fields(dumps(TASK_BODY, "auth")[0])
    fields[4] = fields[4].replace(b"[2, 3]", b"[2, 4]")
    assert "bad signature" in _refusal(_pack(fields))


def test_missing_or_bad_signature_is_refused(installed: Signer) -> None:
    fields = _fields(dumps(TASK_BODY, "auth")[0])
    assert "bad signature" in _refusal(_pack([fields[0], b"", *fields[2:]]))
    forged = base64.b64encode(b"x" * 256)
    assert "bad signature" in _refusal(_pack([fields[0], forged, *fields[2:]]))
    assert "malformed auth body" in _refusal(base64.b64encode(b"[[2, 3], {}, {}]"))
    assert "malformed auth body" in _refusal(b"not base64 at all!")


def test_unknown_certificate_is_refused(installed: Signer, pki: dict[str, Any]) -> None:
    mallory = _signer(pki["mallory"], pki["store"])
    message = _refusal(mallory.seal(TASK_BODY))
    assert "unknown certificate" in message and "mallory" in message


def test_unsigned_content_is_not_accepted_with_auth_only() -> None:
    body, content_type, encoding = dumps(TASK_BODY, "json")
    with pytest.raises(ContentDisallowed, match="accept_content"):
        loads(body, content_type, encoding, accept=["auth"])


def test_auth_without_setup_security_says_what_to_do() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"setup_security"):
        dumps(TASK_BODY, "auth")


def test_setup_security_checks_settings(pki: dict[str, Any]) -> None:
    app = Celery("sec", broker="memory://")
    with pytest.raises(ImproperlyConfigured, match="task_serializer='auth'"):
        app.setup_security()
    app.conf.update(task_serializer="auth", accept_content=["auth"])
    with pytest.raises(ImproperlyConfigured, match="security_certificate, security_cert_store"):
        app.setup_security(key=str(pki["alice"].key))
    app.conf.update(
        security_key=str(pki["alice"].key),
        security_certificate=str(pki["alice"].cert),
        security_cert_store=str(pki["store"] / "*.pem"),
    )
    with pytest.raises(SecurityError, match="security_key_password"):
        app.setup_security()
    app.conf.security_digest = "nonsense"
    with pytest.raises(ImproperlyConfigured, match="security_digest"):
        app.setup_security(key_password="s3cret")
    app.conf.security_digest = "sha512"
    try:
        app.setup_security(key_password="s3cret")
        body, _, _ = dumps({"x": 1}, "auth")
        assert loads(body, "application/data", "utf-8", accept=["auth"]) == {"x": 1}
    finally:
        serializers.use_signer(None)


def test_cert_store_refuses_empty_and_duplicates(pki: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="holds no certificate"):
        CertStore.from_path(str(tmp_path))
    (tmp_path / "a.pem").write_bytes(pki["alice"].cert.read_bytes())
    (tmp_path / "b.pem").write_bytes(pki["alice"].cert.read_bytes())
    with pytest.raises(SecurityError, match="duplicate certificate"):
        CertStore.from_path(str(tmp_path))
