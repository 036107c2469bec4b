"""Serializers and compression: wire forms, roundtrips, accept enforcement, every error path."""

from __future__ import annotations

import bz2
import datetime as dt
import decimal
import gzip
import json
import lzma
import pickle
import sys
import uuid
import zlib
from typing import Any

import pytest

from celeriac.exceptions import ContentDisallowed, DecodeError, EncodeError, ImproperlyConfigured
from celeriac.protocol.compression import compress, decompress
from celeriac.protocol.serializers import content_type_of, dumps, loads, normalize_accept


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __json__(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y}


def test_json_body_bytes_match_kombu_layout() -> None:
    body, content_type, encoding = dumps([[2, 2], {}, {"chain": None}], "json")
    assert body == b'[[2, 2], {}, {"chain": null}]'
    assert (content_type, encoding) == ("application/json", "utf-8")


def test_json_escapes_non_ascii_like_kombu() -> None:
    body, _, _ = dumps(["é"], "json")
    assert body == b'["\\u00e9"]'
    assert loads(body, "application/json", "utf-8", accept=["json"]) == ["é"]


@pytest.mark.parametrize(
    ("value", "kind", "wire_value"),
    [
        (
            dt.datetime(2026, 11, 21, 19, 9, 36, 932826, tzinfo=dt.UTC),
            "datetime",
            "2026-11-21T19:09:36.932826+00:00",
        ),
        (dt.datetime(2026, 1, 2, 3, 4, 5), "datetime", "2026-01-02T03:04:05"),
        (dt.date(2026, 1, 2), "date", "2026-01-02"),
        (dt.time(3, 4, 5), "time", "03:04:05"),
        (decimal.Decimal("1.10"), "decimal", "1.10"),
        (
            uuid.UUID("8174b083-0000-4000-8000-000000000001"),
            "uuid",
            {"hex": "8174b083000040008000000000000001"},
        ),
        (b"plain", "bytes", "plain"),
        (b"\xff\x00", "base64", "/wA="),
    ],
)
def test_json_type_wrappers(value: Any, kind: str, wire_value: Any) -> None:
    body, _, _ = dumps({"v": value}, "json")
    assert json.loads(body) == {"v": {"__type__": kind, "__value__": wire_value}}
    decoded = loads(body, "application/json", "utf-8", accept=["json"])
    assert decoded == {"v": value}
    assert type(decoded["v"]) is type(value)


def test_json_accepts_uuid_wrapper_holding_a_plain_string() -> None:
    body = b'{"__type__": "uuid", "__value__": "8174b083-0000-4000-8000-000000000001"}'
    assert loads(body, "application/json", "utf-8", accept=["json"]) == uuid.UUID(
        "8174b083-0000-4000-8000-000000000001"
    )


def test_json_leaves_legacy_bare_strings_and_lookalike_dicts_alone() -> None:
    body = b'["2026-11-21T19:09:36+00:00", {"__type__": "datetime", "__value__": 1, "x": 2}]'
    assert loads(body, "application/json", "utf-8", accept=["json"]) == [
        "2026-11-21T19:09:36+00:00",
        {"__type__": "datetime", "__value__": 1, "x": 2},
    ]


def test_json_dumps_objects_with_dunder_json_and_tuples_as_lists() -> None:
    body, _, _ = dumps({"p": Point(1, 2), "t": (1, (2, 3))}, "json")
    assert json.loads(body) == {"p": {"x": 1, "y": 2}, "t": [1, [2, 3]]}


def test_json_unknown_type_wrapper_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"application/json.*unknown JSON type wrapper 'frob'"):
        loads(b'{"__type__": "frob", "__value__": 1}', "application/json", "utf-8", accept=["json"])


@pytest.mark.parametrize(
    ("serializer", "content_type", "encoding"),
    [
        ("json", "application/json", "utf-8"),
        ("msgpack", "application/x-msgpack", "binary"),
        ("yaml", "application/x-yaml", "utf-8"),
        ("pickle", "application/x-python-serialize", "binary"),
    ],
)
def test_roundtrip_each_serializer(serializer: str, content_type: str, encoding: str) -> None:
    value = [[1, "two", 3.5, None, True], {"k": {"nested": [1, 2]}}, {"chain": None}]
    body, got_type, got_encoding = dumps(value, serializer)
    assert (got_type, got_encoding) == (content_type, encoding)
    assert content_type_of(serializer) == content_type
    assert loads(body, content_type, encoding, accept=[serializer]) == value


def test_pickle_and_yaml_keep_datetimes_natively() -> None:
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    for serializer in ("pickle", "yaml"):
        body, content_type, encoding = dumps({"when": when}, serializer)
        assert loads(body, content_type, encoding, accept=[serializer]) == {"when": when}


def test_json_cannot_encode_arbitrary_objects() -> None:
    with pytest.raises(EncodeError) as info:
        dumps({"x": object()}, "json")
    message = str(info.value)
    assert "json serializer cannot encode a value of type 'object'" in message
    assert "plain JSON types" in message
    assert "__json__()" in message
    assert "another serializer" in message


@pytest.mark.parametrize(
    ("serializer", "value", "named"),
    [
        ("msgpack", {"when": dt.datetime(2026, 1, 1)}, "datetime"),
        ("pickle", {"f": lambda: None}, "function"),
        ("yaml", {"o": Point(1, 2)}, "Point"),
    ],
)
def test_other_serializers_name_what_they_cannot_encode(
    serializer: str, value: Any, named: str
) -> None:
    with pytest.raises(EncodeError, match=rf"the {serializer} serializer cannot encode.*{named}"):
        dumps(value, serializer)


def test_unknown_serializer_lists_the_known_ones() -> None:
    message = "unknown serializer 'xml'; known serializers are: auth, json, msgpack, pickle, yaml"
    with pytest.raises(ImproperlyConfigured, match=message):
        dumps([], "xml")
    with pytest.raises(ImproperlyConfigured, match="unknown serializer 'xml'"):
        content_type_of("xml")


@pytest.mark.parametrize(("serializer", "module"), [("msgpack", "msgpack"), ("yaml", "yaml")])
def test_missing_optional_library_names_the_extra(
    serializer: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, content_type, encoding = dumps([1], serializer)
    monkeypatch.setitem(sys.modules, module, None)  # makes ``import module`` fail
    hint = f'pip install "celeriac\\[{serializer}\\]"'
    with pytest.raises(ImproperlyConfigured, match=hint):
        dumps([1], serializer)
    with pytest.raises(ImproperlyConfigured, match=hint):
        loads(body, content_type, encoding, accept=[serializer])


def test_normalize_accept_maps_names_and_keeps_mime_types() -> None:
    assert normalize_accept(["json", "application/x-python-serialize", "yaml"]) == {
        "application/json",
        "application/x-python-serialize",
        "application/x-yaml",
    }
    with pytest.raises(ImproperlyConfigured, match="unknown serializer 'jsn'"):
        normalize_accept(["jsn"])


def test_content_not_accepted_is_refused_with_the_setting_named() -> None:
    body, content_type, encoding = dumps([1], "pickle")
    with pytest.raises(ContentDisallowed) as info:
        loads(body, content_type, encoding, accept=["json"])
    message = str(info.value)
    assert "'application/x-python-serialize'" in message
    assert "['application/json']" in message
    assert "accept_content" in message


def test_accept_mixes_names_and_mime_types() -> None:
    body, content_type, encoding = dumps([1], "pickle")
    assert loads(body, content_type, encoding, accept=["application/json", "pickle"]) == [1]


def test_accepted_content_type_without_a_serializer_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no serializer for content type 'application/x-thrift'"):
        loads(b"raw", "application/x-thrift", "binary", accept=["application/x-thrift"])


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[1, ", "application/json"),
        (b"", "application/json"),
        (b"\xc1", "application/x-msgpack"),
        (b"not a pickle", "application/x-python-serialize"),
        (b"a: [1", "application/x-yaml"),
    ],
)
def test_undecodable_bodies_name_the_content_type(body: bytes, content_type: str) -> None:
    with pytest.raises(DecodeError, match=f"body of content type '{content_type}' does not"):
        loads(body, content_type, "utf-8", accept=[content_type])


def test_yaml_refuses_python_object_tags() -> None:
    body = b"!!python/object/apply:os.system ['true']"
    with pytest.raises(DecodeError, match="application/x-yaml"):
        loads(body, "application/x-yaml", "utf-8", accept=["yaml"])


def test_text_bodies_and_binary_encoding_are_tolerated() -> None:
    assert loads('{"a": 1}', "application/json", "utf-8", accept=["json"]) == {"a": 1}  # type: ignore[arg-type]
    assert loads(b'{"a": 1}', "application/json", "binary", accept=["json"]) == {"a": 1}


# -- compression -----------------------------------------------------------------------------

PAYLOAD = b'[[2, 2], {}, {"callbacks": null}]' * 20


@pytest.mark.parametrize(
    ("method", "header"),
    [
        ("zlib", "application/x-gzip"),
        ("gzip", "application/x-gzip"),
        ("application/x-gzip", "application/x-gzip"),
        ("bzip2", "application/x-bz2"),
        ("application/x-bz2", "application/x-bz2"),
        ("lzma", "application/x-lzma"),
        ("xz", "application/x-lzma"),
        ("application/x-lzma", "application/x-lzma"),
    ],
)
def test_compression_roundtrip_and_header(method: str, header: str) -> None:
    compressed, got_header = compress(PAYLOAD, method)
    assert got_header == header
    assert compressed != PAYLOAD
    assert decompress(compressed, got_header) == PAYLOAD
    assert decompress(compressed, method) == PAYLOAD


def test_gzip_sends_a_zlib_stream_like_kombu_and_reads_real_gzip_too() -> None:
    compressed, _ = compress(PAYLOAD, "gzip")
    assert zlib.decompress(compressed) == PAYLOAD
    assert decompress(gzip.compress(PAYLOAD), "application/x-gzip") == PAYLOAD
    assert decompress(bz2.compress(PAYLOAD), "application/x-bz2") == PAYLOAD
    assert decompress(lzma.compress(PAYLOAD), "application/x-lzma") == PAYLOAD


def test_unknown_compression_methods() -> None:
    with pytest.raises(ImproperlyConfigured, match="unknown compression method 'snappy'; known"):
        compress(PAYLOAD, "snappy")
    with pytest.raises(DecodeError, match=r"cannot decompress .* 'application/x-brotli'"):
        decompress(PAYLOAD, "application/x-brotli")


@pytest.mark.parametrize(
    "header", ["application/x-gzip", "application/x-bz2", "application/x-lzma"]
)
def test_corrupt_compressed_body_is_a_decode_error(header: str) -> None:
    with pytest.raises(DecodeError, match=f"does not decompress as {header}"):
        decompress(b"definitely not compressed", header)


def test_pickle_protocol_is_readable_by_older_pythons() -> None:
    body, _, _ = dumps([1], "pickle")
    assert body[:2] == b"\x80\x04"
    assert pickle.loads(body) == [1]
