"""Accept lists where stored results are decoded: results, group and chord meta
(``result_accept_content``, defaulting to ``accept_content``), and event messages."""

from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.canvas.join import decode_entry, encode_entry
from celeriac.exceptions import ContentDisallowed
from celeriac.protocol.message import Message


class Tripwire:
    """Unpickling one writes a file: the proof that pickle.loads ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "unpickled"))


@pytest.fixture(name="app")
def app_fixture() -> Iterator[Celery]:
    name = uuid.uuid4().hex[:8]
    celeriac_app = Celery("acc", broker=f"memory://{name}", backend=f"memory://{name}")
    yield celeriac_app
    celeriac_app.close()


def test_stored_pickle_is_refused_unless_result_accept_content_has_it(
    app: Celery, tmp_path: Path
) -> None:
    wire = tmp_path / "tripwire"
    app.conf.result_serializer = "pickle"  # what this client would write; accept_content: json
    app.results.backend.store(
        "t1",
        pickle.dumps({"status": "SUCCESS", "result": Tripwire(wire)}),
        state="SUCCESS",
        ttl=None,
    )
    with pytest.raises(ContentDisallowed, match="result_accept_content") as refused:
        app.AsyncResult("t1").get(timeout=1)
    assert "application/x-python-serialize" in str(refused.value)
    assert not wire.exists()  # refused before decoding
    app.conf.result_accept_content = ["pickle"]
    app.AsyncResult("t1").get(timeout=1)
    assert wire.read_text() == "unpickled"


def test_result_accept_content_wins_over_accept_content(app: Celery) -> None:
    app.conf.update(result_serializer="pickle", accept_content=["json", "pickle"])
    app.results.store("t1", "SUCCESS", 42)
    assert app.AsyncResult("t1").get(timeout=1) == 42  # accept_content is the default
    app.conf.result_accept_content = ["json"]
    with pytest.raises(ContentDisallowed, match="result_accept_content"):
        app.AsyncResult("t1").get(timeout=1)


def test_group_and_chord_meta_follow_result_accept_content(app: Celery) -> None:
    app.conf.update(result_serializer="pickle", result_accept_content=["pickle"])
    app.results.save_group("g1", [["g1", None], [[["t1", None], None]]])
    entry = encode_entry(app, "t1", "SUCCESS", 3)
    assert app.results.restore_group("g1") == [["g1", None], [[["t1", None], None]]]
    assert decode_entry(app, entry) == ("t1", "SUCCESS", 3)
    app.conf.result_accept_content = ["json"]
    with pytest.raises(ContentDisallowed, match="result_accept_content"):
        app.results.restore_group("g1")
    with pytest.raises(ContentDisallowed, match="result_accept_content"):
        decode_entry(app, entry)


def test_events_in_an_unaccepted_serializer_are_skipped_naming_the_setting(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = app.events.Receiver(None, handlers={})
    body = pickle.dumps({"type": "worker-online", "hostname": "w"})
    message = Message(body, "application/x-python-serialize", "binary", {}, {})
    with caplog.at_level(logging.WARNING):
        assert receiver._decode(message) == []
    assert "event_serializer" in caplog.text
