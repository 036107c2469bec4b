"""The dashboard against a hostile page: DNS rebinding refused on every route, allowed hosts,
a URL prefix for a reverse proxy, and a config endpoint that shows no secret."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.dashboard.adapter import ControlAdapter
from celeriac.dashboard.auth import AuthPolicy, host_allowed
from celeriac.dashboard.server import create_app
from celeriac.dashboard.store import DashboardStore
from tests.unit.test_dashboard_store import T0, received

READS = [
    "/",
    "/api/tasks",
    "/api/tasks/t1",
    "/api/workers",
    "/api/config",
    "/api/queues",
    "/api/stream",
    "/metrics",
    "/static/app.js",
]


@pytest.fixture(name="app")
def app_fixture() -> Iterator[Celery]:
    celeriac_app = Celery("proj", broker=f"memory://sec-{uuid.uuid4().hex[:8]}")
    yield celeriac_app
    celeriac_app.close()


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Iterator[DashboardStore]:
    opened = DashboardStore(str(tmp_path / "dash.sqlite"), clock=ManualClock(T0 + 5))
    opened.apply([received("t1", T0, name="proj.add")])
    yield opened
    opened.close()


def _board(app: Celery, store: DashboardStore, prefix: str = "", **options: Any) -> Starlette:
    policy = AuthPolicy.from_options(**options)
    return create_app(
        app,
        store,
        auth=policy,
        collect=False,
        clock=store.clock,
        url_prefix=prefix,
        control=ControlAdapter(app, timeout=0.1),
    )


def test_loopback_dashboard_refuses_a_rebound_host_on_every_read(
    app: Celery, store: DashboardStore
) -> None:
    board = _board(app, store, address="127.0.0.1")
    with TestClient(board, base_url="http://rebound.attacker.example:5555") as client:
        for path in READS:
            refused = client.get(path)
            assert refused.status_code == 403, path
            assert "--allowed-hosts" in refused.json()["error"]
            assert "t1" not in refused.text
    for base in ("http://127.0.0.1:5555", "http://localhost:5555", "http://[::1]:5555"):
        with TestClient(board, base_url=base) as client:
            assert client.get("/api/tasks/t1").json()["uuid"] == "t1", base
            assert client.get("/static/app.js").status_code == 200


def test_allowed_hosts_are_served_and_others_refused(app: Celery, store: DashboardStore) -> None:
    board = _board(app, store, allowed_hosts=["ops.example.com,.corp.example"])
    for base, status in [
        ("https://ops.example.com", 200),
        ("http://ops.example.com:8080", 200),
        ("http://dash.corp.example", 200),
        ("http://corp.example", 200),
        ("http://evilcorp.example", 403),
        ("http://ops.example.com.evil", 403),
    ]:
        with TestClient(board, base_url=base) as client:
            assert client.get("/api/tasks/t1").status_code == status, base


def test_bound_elsewhere_without_allowed_hosts_leaves_hosts_to_credentials() -> None:
    assert not AuthPolicy.from_options(address="0.0.0.0").check_host
    assert AuthPolicy.from_options(address="::1").check_host
    assert AuthPolicy.from_options(address="0.0.0.0", allowed_hosts=["a"]).check_host
    assert host_allowed("LOCALHOST:5555", []) and host_allowed("127.3.4.5", [])
    assert not host_allowed("localhost.attacker.example", [])
    assert host_allowed("anything.example", ["*"])


def test_url_prefix_serves_everything_under_it(app: Celery, store: DashboardStore) -> None:
    board = _board(app, store, prefix="celeriac/", address="127.0.0.1")
    with TestClient(board, base_url="http://localhost:5555") as client:
        page = client.get("/celeriac/")
        assert page.status_code == 200
        assert '<meta name="celeriac-root" content="/celeriac">' in page.text
        assert '"/celeriac/static/app.js"' in page.text and '"/static/' not in page.text
        assert client.get("/celeriac/static/app.js").status_code == 200
        assert client.get("/celeriac/api/tasks/t1").json()["uuid"] == "t1"
        assert client.get("/api/tasks/t1").status_code == 404
        bare = client.get("/celeriac", follow_redirects=False)
        assert bare.status_code in (301, 307, 308)
        assert bare.headers["location"].endswith("/celeriac/")
    with TestClient(board, base_url="http://rebound.attacker.example") as client:
        assert client.get("/celeriac/static/app.js").status_code == 403


def test_config_shows_no_secrets(store: DashboardStore) -> None:
    app = Celery(
        "proj",
        broker="amqp://u:s3cretA@127.0.0.1:1//;amqp://u:s3cretB@127.0.0.1:2//?token=s3cretC",
    )
    app.conf.broker_transport_options = {"password": "s3cretD"}
    try:
        board = _board(app, store, auth=["admin:s3cretE"], allowed_hosts=["testserver"])
        with TestClient(board) as client:
            shown = client.get("/api/config", auth=("admin", "s3cretE"))
        assert shown.status_code == 200
        assert "s3cret" not in shown.text
        assert (
            shown.json()["broker"] == "amqp://u:**@127.0.0.1:1//;amqp://u:**@127.0.0.1:2//?token=**"
        )
    finally:
        app.close()
