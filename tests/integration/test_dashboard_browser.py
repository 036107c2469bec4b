"""The dashboard end to end: a worker with -E, ``celeriac dashboard``, headless Chromium.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``make chromium``), driven through
Playwright's Python package; ``playwright install`` is never run. Without either the tests
skip locally and fail in CI (``CI=true``).

``DASHBOARD_SCREENSHOT=docs/dashboard.png`` saves the page as the README shows it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.polling import eventually

from .conftest import Project

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PROGRESS_TASK = """

@app.task(bind=True)
def crunch(self, steps, pause):
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"current": step, "total": steps})
        time.sleep(pause)
    return steps
"""


def _require_browser() -> Any:
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (pip install playwright)"
    if problem is None and not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing (make chromium, or apt-get install -y chromium)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests need Chromium in CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def dashboard(project: Project) -> Iterator[str]:
    """``celeriac -A tasks dashboard`` on a free loopback port; its URL."""
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
        "--allow-unauthenticated-control",
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
        yield f"http://127.0.0.1:{port}/"
    finally:
        project.stop(proc, timeout=10)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    sync_playwright = _require_browser()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _row(page: Any, task_id: str, state: str) -> Any:
    row = page.locator(f'tr[data-uuid="{task_id}"][data-state="{state}"]')
    row.wait_for(timeout=20_000)
    return row


def test_live_tasks_progress_and_revoke(
    project: Project, tasks: Any, dashboard: str, page: Any, tmp_path: Path
) -> None:
    (project.root / "tasks.py").write_text((project.root / "tasks.py").read_text() + PROGRESS_TASK)
    project.start_worker("-E", "-P", "threads", "-c", "4")
    page.goto(dashboard)
    page.locator("#live.on").wait_for(timeout=10_000)
    worker = page.locator("#workers tr[data-worker^='w1@']")
    worker.locator(".status.online").wait_for(timeout=15_000)
    expect(worker.locator("td.pool")).to_contain_text(re.compile(r"ThreadPool\W+4"), timeout=15_000)
    page.evaluate("window.__loadedOnce = true")  # gone if the page reloads

    worker.locator("button.grow").click()
    expect(page.locator("#notice")).to_contain_text("pool will grow", timeout=10_000)
    expect(worker.locator("td.pool")).to_contain_text(re.compile(r"ThreadPool\W+5"), timeout=10_000)
    page.fill("#rate-limit input[name=task]", "tasks.add")
    page.fill("#rate-limit input[name=rate]", "6000/m")
    page.click("#rate-limit button")
    expect(page.locator("#notice")).to_contain_text("new rate limit set", timeout=10_000)

    added = tasks.app.send_task("tasks.add", (2, 3))
    row = _row(page, added.id, "SUCCESS")
    assert row.locator("td").nth(1).inner_text() == "tasks.add"

    tasks.app.conf.task_send_sent_event = True  # an ETA task waits in the broker: the
    later = tasks.app.send_task("tasks.add", (1, 1), countdown=60)  # client's event shows it
    _row(page, later.id, "PENDING").locator("button.revoke").click()
    _row(page, later.id, "REVOKED")
    assert tasks.app.AsyncResult(later.id).state == "REVOKED"

    sleepy = tasks.app.send_task("tasks.sleepy", (30,))
    page.once("dialog", lambda dialog: dialog.accept())  # "Terminate ...?"
    _row(page, sleepy.id, "STARTED").locator("button.terminate").click()
    _row(page, sleepy.id, "REVOKED")

    crunch = tasks.app.send_task("tasks.crunch", (12, 0.4))
    bar = page.locator(f'tr[data-uuid="{crunch.id}"] progress')
    bar.wait_for(timeout=20_000)
    first = float(bar.get_attribute("value") or 0)
    page.wait_for_function(
        '([id, first]) => { const bar = document.querySelector(`tr[data-uuid="${id}"] progress`);'
        " return bar && Number(bar.getAttribute('value')) > first; }",
        arg=[crunch.id, first],
        timeout=20_000,
    )

    for x in range(6):
        tasks.app.send_task("tasks.add", (x, x))
    failed = tasks.app.send_task("tasks.fail")
    _row(page, failed.id, "FAILURE")
    expect(page.locator("#count-failed")).to_have_text("1", timeout=10_000)  # the chart too
    _screenshot(page, tmp_path)
    _row(page, crunch.id, "SUCCESS")
    assert page.evaluate("window.__loadedOnce") is True


def _screenshot(page: Any, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    wanted = os.environ.get("DASHBOARD_SCREENSHOT")
    if wanted:
        shutil.copyfile(shot, wanted)
