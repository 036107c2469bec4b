"""One masking function for every display: a table of URL forms and of settings."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from celeriac._masking import mask_text, mask_url, mask_value
from celeriac.app.settings import Settings
from celeriac.transports import mask_password
from celeriac.worker.banner import banner, describe_url

URLS = [
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ("redis://:s3cret@localhost:6379/0", "redis://:**@localhost:6379/0"),
    ("redis://user:s3cret@localhost/0", "redis://user:**@localhost/0"),
    (
        "rediss://u:s3cret@h:6380/1?ssl_cert_reqs=required",
        "rediss://u:**@h:6380/1?ssl_cert_reqs=required",
    ),
    ("amqp://guest@localhost//", "amqp://guest@localhost//"),
    ("amqp://u:p@ss:w/rd?x@host:5672/vh", "amqp://u:**@host:5672/vh"),
    ("amqp://u:p1@h1;amqp://u:p2@h2//", "amqp://u:**@h1;amqp://u:**@h2//"),
    ("amqp://u:p1@h1; amqp://u:p2@h2//", "amqp://u:**@h1;amqp://u:**@h2//"),
    (
        "sentinel://:s1@h1:26379;sentinel://:s2@h2:26379;sentinel://:s3@h3:26379",
        "sentinel://:**@h1:26379;sentinel://:**@h2:26379;sentinel://:**@h3:26379",
    ),
    ("redis://h/0?password=s3cret", "redis://h/0?password=**"),
    (
        "redis://h/0?db=1&password=s3cret&socket_timeout=3",
        "redis://h/0?db=1&password=**&socket_timeout=3",
    ),
    ("sqs://AKIAKEY:SECRETKEY@", "sqs://AKIAKEY:**@"),
    (
        "db+postgresql://pg:s3cret@h/db?sslpassword=x&token=t",
        "db+postgresql://pg:**@h/db?sslpassword=**&token=**",
    ),
    ("rpc://", "rpc://"),
    ("memory://", "memory://"),
]


@pytest.mark.parametrize(("url", "shown"), URLS)
def test_every_url_form_is_masked_everywhere(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert mask_password(url) == shown  # errors of the transports
    assert describe_url(url) == shown  # the worker banner and celeriac report
    assert mask_value("broker_url", url) == shown  # settings, the dashboard's /api/config


def test_urls_inside_messages_and_lists_are_masked() -> None:
    text = "cannot reach 'amqp://u:p1@h1;amqp://u:p2@h2//' (refused), try redis://:x@y"
    assert (
        mask_text(text)
        == "cannot reach 'amqp://u:**@h1;amqp://u:**@h2//' (refused), try redis://:**@y"
    )
    assert mask_value("broker_url", ["amqp://u:p1@h1", "amqp://u:p2@h2"]) == [
        "amqp://u:**@h1",
        "amqp://u:**@h2",
    ]


OPTIONS: dict[str, Any] = {
    "global_keyprefix": "app:",
    "password": "s3cret",
    "sentinel_kwargs": {"password": "s3cret", "socket_timeout": 1},
    "master_name": "mymaster",
    "token": "t0k",
    "api_key": "k",
    "aws_secret_access_key": "x",
    "client_secret": "x",
    "key": "x",
    "ssl": {"ssl_keyfile": "/etc/k.pem", "ssl_cert_reqs": "required", "ssl_password": "x"},
    "login": {"url": "amqp://u:p@h//"},
}


def test_transport_options_are_masked_key_by_key() -> None:
    shown = mask_value("broker_transport_options", OPTIONS)
    assert "s3cret" not in repr(shown) and "t0k" not in repr(shown) and ":p@" not in repr(shown)
    assert shown["global_keyprefix"] == "app:" and shown["master_name"] == "mymaster"
    assert shown["sentinel_kwargs"] == {"password": "********", "socket_timeout": 1}
    assert shown["ssl"]["ssl_keyfile"] == "/etc/k.pem"
    assert shown["ssl"]["ssl_password"] == "********"
    assert {
        shown[k] for k in ("token", "api_key", "aws_secret_access_key", "client_secret", "key")
    } == {"********"}
    assert shown["login"] == {"url": "amqp://u:**@h//"}


def test_settings_table_masks_secret_settings_and_urls() -> None:
    conf = Settings(
        {
            "broker_url": "amqp://u:p1@h1;amqp://u:p2@h2//",
            "security_key_password": "pw",
            "security_key": "/etc/ssl/worker.key",
            "task_default_routing_key": "jobs",
            "broker_transport_options": {"sentinel_kwargs": {"password": "s3cret"}},
        }
    )
    text = conf.humanize()
    for secret in ("p1", "p2", "'pw'", "s3cret", "worker.key"):
        assert secret not in text
    assert conf.table()["task_default_routing_key"] == "jobs"  # not a secret


SECRET_APP = """
from celeriac import Celery

app = Celery("masked", broker="amqp://u:s3cretA@127.0.0.1:1//;amqp://u:s3cretB@127.0.0.1:2//",
             backend="redis://:s3cretC@127.0.0.1:1/0?password=s3cretD")
app.conf.broker_transport_options = {"sentinel_kwargs": {"password": "s3cretE"}}
app.conf.security_key_password = "s3cretF"
"""


@pytest.fixture(name="masked_app")
def masked_app_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    (tmp_path / "masked.py").write_text(SECRET_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("masked", None)
    import masked

    yield masked.app
    sys.modules.pop("masked", None)
    masked.app.close()


def test_celeriac_report_and_the_banner_show_no_secret(masked_app: Any) -> None:
    from celeriac.cli.main import cli
    from celeriac.routing import Queue
    from celeriac.transports.memory import MemoryTransport

    report = CliRunner().invoke(cli, ["-A", "masked", "report"], catch_exceptions=False)
    assert report.exit_code == 0, report.output
    assert "s3cret" not in report.output
    assert "broker:amqp://u:********@127.0.0.1:1//;amqp://u:********@127.0.0.1:2//" in report.output
    assert report.output == masked_app.bugreport() + "\n"  # the text of app.bugreport(), as Celery
    text = banner(
        masked_app,
        hostname="w@h",
        pool="solo",
        concurrency=1,
        queues=[Queue("celery")],
        transport=MemoryTransport("memory://banner"),
    )
    assert "s3cret" not in text and "amqp://u:**@127.0.0.1:1//" in text
