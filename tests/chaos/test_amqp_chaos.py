"""Chaos on RabbitMQ, on a private node of the module's own (other ports): workers killed
with ``kill -9`` mid-flight, and the node restarted (``rabbitmqctl stop``, then ``kill -9``
of the Erlang VM) under running workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import harness
from tests.support import amqp_support

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[amqp_support.PrivateNode]:
    with amqp_support.private_node(tmp_path_factory.mktemp("rabbit")) as private:
        yield private


def _check(report: harness.Report, soak: harness.Soak) -> None:
    print(harness.table([report]))
    assert report.ok, "\n".join(report.details) + "\n" + soak.logs()
    assert report.executed == report.sent


def test_worker_kills_lose_nothing(node: amqp_support.PrivateNode, tmp_path: Path) -> None:
    broker = harness.amqp_broker(node.url(), tmp_path)
    with harness.soak_in(tmp_path, broker, queue="chaos-kills") as soak:
        report = harness.worker_kills(soak, 1000, timeout=90)
        assert report.kills >= 1
        _check(report, soak)


def test_broker_restarts_lose_nothing(node: amqp_support.PrivateNode, tmp_path: Path) -> None:
    broker = harness.amqp_broker(node.url(), tmp_path)
    with harness.soak_in(tmp_path, broker, queue="chaos-restarts") as soak:
        report = harness.broker_restarts(
            soak, harness.amqp_restartable(node), 300, duration=12, timeout=120
        )
        assert report.outages == 2
        _check(report, soak)
