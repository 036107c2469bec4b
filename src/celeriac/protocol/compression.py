"""Body compression, as Celery's ``task_compression`` / ``result_compression`` do it.

The compressed body travels with a ``compression`` header naming the method by mime type:

================  ========================  ==========================================
names             header                    codec
================  ========================  ==========================================
zlib, gzip        ``application/x-gzip``    zlib stream (kombu sends zlib for "gzip" too)
bzip2, bzip       ``application/x-bz2``     bz2
lzma, xz          ``application/x-lzma``    lzma/xz container
================  ========================  ==========================================

Decompressing ``application/x-gzip`` accepts both a zlib stream and a real gzip file, so
bodies from other producers that did send gzip still open. Brotli and zstd (which kombu
supports when their libraries are installed) are not supported here.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable

from celeriac.exceptions import DecodeError, ImproperlyConfigured

__all__ = [
    "COMPRESSED_RESULT_MAGIC",
    "COMPRESSION_METHODS",
    "compress",
    "compress_result",
    "decompress",
    "decompress_result",
    "split_compressed_result",
]

_GZIP = "application/x-gzip"
_BZ2 = "application/x-bz2"
_LZMA = "application/x-lzma"

_ALIASES = {
    "zlib": _GZIP,
    "gzip": _GZIP,
    "bzip2": _BZ2,
    "bzip": _BZ2,
    "lzma": _LZMA,
    "xz": _LZMA,
    _GZIP: _GZIP,
    _BZ2: _BZ2,
    _LZMA: _LZMA,
}

# wbits 47 = 32 + 15: zlib.decompress detects a zlib or a gzip header by itself.
_ZLIB_OR_GZIP_WBITS = 47


def _gunzip(body: bytes) -> bytes:
    return zlib.decompress(body, _ZLIB_OR_GZIP_WBITS)


_COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    _GZIP: zlib.compress,
    _BZ2: bz2.compress,
    _LZMA: lzma.compress,
}
_DECOMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    _GZIP: _gunzip,
    _BZ2: bz2.decompress,
    _LZMA: lzma.decompress,
}


#: Every name ``compress`` takes (short names and mime types).
COMPRESSION_METHODS = tuple(sorted(_ALIASES))


def _known() -> str:
    return ", ".join(sorted(_ALIASES))


def compress(body: bytes, method: str) -> tuple[bytes, str]:
    """Compress ``body`` with ``method`` (a short name or mime type).

    Returns the compressed body and the ``compression`` header value to send with it.
    Raises ``ImproperlyConfigured`` for an unknown method.
    """
    header = _ALIASES.get(method)
    if header is None:
        raise ImproperlyConfigured(
            f"unknown compression method {method!r}; known methods are: {_known()}"
        )
    return _COMPRESSORS[header](bytes(body)), header


def decompress(body: bytes, header: str) -> bytes:
    """Undo ``compress``: ``header`` is the message's ``compression`` header (or a short name).

    Raises ``DecodeError`` for an unknown method or a body that does not decompress.
    """
    method = _ALIASES.get(header) if isinstance(header, str) else None
    if method is None:
        raise DecodeError(
            f"cannot decompress a body compressed with {header!r}; supported methods are: "
            f"{_known()}"
        )
    try:
        return _DECOMPRESSORS[method](bytes(body))
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        raise DecodeError(
            f"body does not decompress as {method} ({type(exc).__name__}: {exc})"
        ) from exc


#: What starts a compressed stored result (``result_compression``), as Celery 5.7 writes it:
#: ``MAGIC + <mime type> + b"\0" + <compressed meta>``. A stored result has no header to name
#: its compression, so it travels in-band; no serializer's output starts with a NUL byte.
COMPRESSED_RESULT_MAGIC = b"\x00celery-compressed\x00"


def compress_result(payload: bytes, method: str) -> bytes:
    """Stored result meta compressed with ``method``, in Celery's in-band format."""
    body, header = compress(payload, method)
    return b"".join([COMPRESSED_RESULT_MAGIC, header.encode(), b"\x00", body])


def split_compressed_result(payload: bytes) -> tuple[bytes, str] | None:
    """(compressed body, mime type) of a ``compress_result`` payload; None for a plain one."""
    if not payload.startswith(COMPRESSED_RESULT_MAGIC):
        return None
    header, _, body = payload[len(COMPRESSED_RESULT_MAGIC) :].partition(b"\x00")
    return body, header.decode("utf-8", "replace")


def decompress_result(payload: bytes) -> bytes:
    """Undo ``compress_result``; a payload without the marker is returned as it is (results
    stored before compression was turned on, or by a reader that never had it on)."""
    parts = split_compressed_result(bytes(payload))
    return payload if parts is None else decompress(*parts)
