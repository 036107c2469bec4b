"""Message signing: Celery's ``auth`` serializer, byte for byte (celery.security).

A signed body is the base64 of five fields joined by the two bytes ``\\x00\\x01``::

    b64(signer id) SEP b64(signature) SEP inner content type SEP inner encoding SEP inner body

The inner body is the value serialized with the inner serializer (``json`` by default); the
signature is RSA-PSS (MGF1, maximal salt) over those inner bytes with ``security_digest``, so
the receiver checks it before decoding anything. The signer id is the certificate's issuer
attribute values joined by spaces, a space, and its serial number; the receiver looks it up
in its certificate store (``security_cert_store``: a file, a directory or a glob of PEM
certificates). An unknown signer, an expired certificate, a bad signature or a tampered
body raises ``SecurityError``; the worker dead-letters such a message and never runs it.

Needs the ``cryptography`` library (``pip install "celeriac[auth]"``), imported here only.
"""

from __future__ import annotations

import base64
import datetime as dt
import glob
import os
from typing import Any

from celeriac.exceptions import ImproperlyConfigured, SecurityError
from celeriac.protocol.serializers import dumps, loads

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImproperlyConfigured(
        "message signing (the auth serializer) needs the cryptography library; "
        'install it with: pip install "celeriac[auth]"'
    ) from None

__all__ = ["CONTENT_TYPE", "CertStore", "Certificate", "Signer", "digest_algorithm"]

CONTENT_TYPE = "application/data"
_SEPARATOR = b"\x00\x01"


def digest_algorithm(name: str) -> hashes.HashAlgorithm:
    """The hash named by ``security_digest`` (``sha256``, ``sha512``, ...)."""
    algorithm = getattr(hashes, str(name).upper(), None)
    if not (isinstance(algorithm, type) and issubclass(algorithm, hashes.HashAlgorithm)):
        raise ImproperlyConfigured(
            f"security_digest {name!r} is not a hash algorithm; use e.g. 'sha256' or 'sha512'"
        )
    return algorithm()


def _pss(digest: hashes.HashAlgorithm) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.MAX_LENGTH)


class Certificate:
    """An RSA X.509 certificate: its id (issuer and serial) and signature checks."""

    def __init__(self, pem: bytes, *, source: str = "certificate") -> None:
        try:
            self._cert = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise SecurityError(f"{source} is not a PEM X.509 certificate: {exc}") from exc
        key = self._cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SecurityError(f"{source}: only RSA certificates can sign messages")
        self._key = key

    @property
    def id(self) -> str:
        """How a signed message names its signer (Celery's ``Certificate.get_id()``)."""
        issuer = " ".join(str(attribute.value) for attribute in self._cert.issuer)
        return f"{issuer} {self._cert.serial_number}"

    def has_expired(self, now: dt.datetime | None = None) -> bool:
        return (now or dt.datetime.now(dt.UTC)) >= self._cert.not_valid_after_utc

    def verify(self, data: bytes, signature: bytes, digest: hashes.HashAlgorithm) -> None:
        """Raise ``SecurityError`` unless ``signature`` is this certificate's over ``data``."""
        if self.has_expired():
            raise SecurityError(f"the signer's certificate has expired: {self.id!r}")
        try:
            self._key.verify(signature, data, _pss(digest), digest)
        except InvalidSignature:
            raise SecurityError(
                f"bad signature: the body was not signed by {self.id!r} or was altered"
            ) from None


class CertStore:
    """The certificates whose signatures are trusted, by id."""

    def __init__(self, certificates: list[Certificate] | None = None) -> None:
        self._certs: dict[str, Certificate] = {}
        for cert in certificates or []:
            self.add(cert)

    @classmethod
    def from_path(cls, path: str) -> CertStore:
        """Every certificate in a file, a directory or a glob; expired ones are refused."""
        pattern = os.path.join(path, "*") if os.path.isdir(path) else path
        store = cls()
        for name in sorted(glob.glob(pattern)):
            with open(name, "rb") as file:
                cert = Certificate(file.read(), source=name)
            if cert.has_expired():
                raise SecurityError(f"expired certificate in security_cert_store: {name}")
            store.add(cert)
        if not store._certs:
            raise ImproperlyConfigured(
                f"security_cert_store {path!r} holds no certificate; point it at the PEM "
                "certificates of the trusted senders (a file, a directory or a glob)"
            )
        return store

    def add(self, cert: Certificate) -> None:
        if cert.id in self._certs:
            raise SecurityError(f"duplicate certificate in security_cert_store: {cert.id!r}")
        self._certs[cert.id] = cert

    def __getitem__(self, signer: str) -> Certificate:
        try:
            return self._certs[signer]
        except KeyError:
            raise SecurityError(
                f"unknown certificate {signer!r}: the signer is not in security_cert_store"
            ) from None


def _load_key(pem: bytes, password: str | bytes | None) -> rsa.RSAPrivateKey:
    secret = password.encode() if isinstance(password, str) else password
    try:
        key = serialization.load_pem_private_key(pem, password=secret or None)
    except (ValueError, TypeError) as exc:
        raise SecurityError(
            f"security_key does not load ({exc}); is it a PEM private key, and is "
            "security_key_password right?"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SecurityError("security_key: only RSA keys can sign messages")
    return key


class Signer:
    """Seals values into signed bodies and opens signed bodies (the ``auth`` codec)."""

    def __init__(
        self,
        *,
        key: bytes | None,
        certificate: Certificate | None,
        store: CertStore,
        digest: str = "sha256",
        serializer: str = "json",
        key_password: str | bytes | None = None,
    ) -> None:
        self._key = _load_key(key, key_password) if key is not None else None
        self._cert = certificate
        self._store = store
        self._digest = digest_algorithm(digest)
        self._serializer = serializer

    def seal(self, value: Any) -> bytes:
        """``value`` serialized, signed and packed (base64 ASCII bytes)."""
        if self._key is None or self._cert is None:
            raise ImproperlyConfigured("signing needs security_key and security_certificate")
        body, content_type, encoding = dumps(value, self._serializer)
        signature = self._key.sign(body, _pss(self._digest), self._digest)
        fields = [
            base64.b64encode(self._cert.id.encode()),
            base64.b64encode(signature),
            content_type.encode(),
            encoding.encode(),
            body,
        ]
        return base64.b64encode(_SEPARATOR.join(fields))

    def open(self, sealed: bytes) -> Any:
        """The value in a signed body; ``SecurityError`` unless a trusted signer signed it."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            signer_b64, signature_b64, content_type, encoding, body = raw.split(_SEPARATOR, 4)
            signer = base64.b64decode(signer_b64).decode()
            signature = base64.b64decode(signature_b64)
        except ValueError as exc:
            raise SecurityError(f"not a signed message (malformed auth body: {exc})") from exc
        self._store[signer].verify(body, signature, self._digest)
        inner = content_type.decode()
        if inner == CONTENT_TYPE:
            raise SecurityError("a signed body may not hold another signed body")
        # Signed by a trusted sender: its inner serializer is trusted too (as Celery does).
        return loads(body, inner, encoding.decode(), accept=[inner])
