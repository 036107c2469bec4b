"""``app.setup_security()``: sign every message this process sends, check every one it reads.

As Celery's ``celery.security.setup_security``: the app must already say
``task_serializer='auth'`` and ``accept_content=['auth']`` (signing is pointless if unsigned
messages are still accepted); the key, certificate and certificate store come from the
arguments or from ``security_key``, ``security_certificate``, ``security_cert_store``,
``security_digest`` and ``security_key_password``. The signer is installed process-wide (a
forked pool child inherits it), because the ``auth`` serializer is found by name.

``allowed_serializers`` is accepted for Celery's signature: AppLike uses it to disable the
other serializers for decoders called without an accept list; Celeriac has no such decoder
(every decode names its accept list), so there is nothing more to disable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import normalize_accept, use_signer

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["setup_security"]

_SETTINGS_MISSING = (
    "app.setup_security() needs the auth serializer for tasks and only it accepted: set "
    "task_serializer='auth' and accept_content=['auth'] (got task_serializer={task!r}, "
    "accept_content={accept!r})"
)
_FILES_MISSING = (
    "app.setup_security() needs security_key, security_certificate and security_cert_store "
    "(paths of the PEM private key, its certificate, and the trusted certificates); "
    "missing: {missing}"
)


def _read(path: str, setting: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ImproperlyConfigured(f"{setting} {path!r} cannot be read: {exc}") from exc


def setup_security(
    app: AppLike,
    allowed_serializers: Iterable[str] | None = None,
    key: str | None = None,
    key_password: str | bytes | None = None,
    cert: str | None = None,
    store: str | None = None,
    digest: str | None = None,
    serializer: str = "json",
) -> None:
    """Check the settings, load key, certificate and store, and install the signer."""
    conf = app.conf
    accept = list(conf.accept_content or [])
    if conf.task_serializer != "auth" or normalize_accept(accept) != {"application/data"}:
        raise ImproperlyConfigured(
            _SETTINGS_MISSING.format(task=conf.task_serializer, accept=accept)
        )
    key = key or conf.security_key
    key_password = key_password or conf.security_key_password
    cert = cert or conf.security_certificate
    store = store or conf.security_cert_store
    digest = digest or conf.security_digest or "sha256"
    given = {"security_key": key, "security_certificate": cert, "security_cert_store": store}
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ImproperlyConfigured(_FILES_MISSING.format(missing=", ".join(missing)))
    # lazy: needs the optional cryptography library
    from celeriac.protocol.signing import Certificate, CertStore, Signer

    cert_path, key_path = str(cert), str(key)
    signer = Signer(
        key=_read(key_path, "security_key"),
        key_password=key_password,
        certificate=Certificate(_read(cert_path, "security_certificate"), source=cert_path),
        store=CertStore.from_path(str(store)),
        digest=str(digest),
        serializer=serializer,
    )
    use_signer(signer)
