"""``celeriac dashboard`` for real (uvicorn): served under ``--url-prefix`` to a browser, and
refusing a rebound ``Host`` on reads."""

from __future__ import annotations

import http.client
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.polling import eventually

from .conftest import Project
from .test_dashboard_browser import _free_port, expect, page  # noqa: F401 - the page fixture

pytestmark = pytest.mark.integration


@pytest.fixture(name="prefixed")
def prefixed_fixture(project: Project) -> Iterator[int]:
    """The dashboard under /celeriac on a free loopback port; its port."""
    port = _free_port()
    log_path = project.root / "dashboard.log"
    argv = [
        sys.executable,
        "-m",
        "celeriac",
        "-A",
        "tasks",
        "dashboard",
        "--port",
        str(port),
        "--url-prefix",
        "/celeriac/",
        "--db",
        str(project.root / "dash.sqlite"),
    ]
    proc = project.start(argv, "dashboard", ready=None)

    def listening() -> bool:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        assert proc.poll() is None, log_path.read_text()
        return False

    try:
        eventually(listening, "the dashboard to listen", timeout=20, interval=0.05)
        yield port
    finally:
        project.stop(proc, timeout=10)


def _get(port: int, path: str, host: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_rebound_host_refused_by_the_real_server(project: Project, prefixed: int) -> None:
    status, body = _get(prefixed, "/celeriac/api/config", f"rebound.attacker.example:{prefixed}")
    assert status == 403 and b"--allowed-hosts" in body
    status, body = _get(prefixed, "/celeriac/api/config", f"localhost:{prefixed}")
    assert status == 200 and b"can_act" in body


def test_the_page_works_under_the_prefix(
    project: Project,
    prefixed: int,
    page: Any,  # noqa: F811 - the fixture imported above
) -> None:
    page.goto(f"http://127.0.0.1:{prefixed}/celeriac/")
    page.locator("#live.on").wait_for(timeout=10_000)  # its event stream, under the prefix
    expect(page.locator("#notice.bad")).to_have_count(0)  # every API call answered
